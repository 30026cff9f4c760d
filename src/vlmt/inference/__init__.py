"""Using a trained model on new inputs: a picture and a question in, answers and attention out."""
