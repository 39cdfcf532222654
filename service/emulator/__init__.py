"""A protocol-faithful CCC 2017-07-05 emulator with a simulated contact centre."""
