"""numbamlp's commands, one module per command or command group; cli/main.py registers them.

  train      numbamlp train
  sweep      numbamlp sweep
  evaluate   numbamlp eval
  predict    numbamlp predict
  export     numbamlp export (ONNX)
  serve      numbamlp serve, serve token
  jobs       numbamlp jobs (the service's client)
  tools      numbamlp gradcheck, info, bench, plot

What several of them share lives beside this package, in numbamlp.cli: common (the user
error, the root group's one-line errors, loading a model, checking an output file),
config_flags (config ↔ flags), predictions (predict's flags and CSV), progress (the epoch
display) and process (the console process around a command).  Each command imports the
library inside its body, so that ``numbamlp --help`` stays instant.
"""
