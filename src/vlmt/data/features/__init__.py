"""Region features: the memory-mapped feature store, converters from the published formats, region
proposals from pixels, and the small region CNN that turns boxes of pixels into features (the
analogue of the Visual Genome-trained detector behind bottom-up features)."""
