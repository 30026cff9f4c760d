"""The synthetic world: scenes of simple shapes with every annotation of every task, written in
the official dataset formats (`vlmt.data.synth.world.generate`)."""
