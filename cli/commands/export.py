"""``numbamlp export``: a model as an ONNX file, for ONNX Runtime and other runtimes.

The library (and onnx) load inside the function, so ``numbamlp --help`` stays instant.
"""

from __future__ import annotations

import click

from numbamlp.cli.common import CliError, check_output_file, load_model


@click.command("export")
@click.argument("model_path", metavar="MODEL")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False),
              help="The .onnx file to write.")
@click.option("--opset", type=int, default=None,
              help="ONNX opset to target, 13 to 28.  [default: 17, loaded by onnxruntime 1.13 and later]")
@click.option("--overwrite", is_flag=True, help="Allow --out to replace an existing file.")
def export_command(model_path, out_file, opset, overwrite):
    """Export MODEL as ONNX: input X (N, D) float32 raw features (the model's standardisation
    is in the graph) — a model trained on a table takes its raw columns instead, one input
    each (numbers double, NaN where missing; text string, "" where missing), named as the
    file's input_columns metadata says; outputs, for a classifier, probabilities (N, C) and label (N,), the
    class values; for a regressor, predictions (N, K) in the targets' units.

    MODEL is a .safetensors model file or a run directory (its model.safetensors).
    """
    check_output_file(out_file, overwrite)
    try:
        from numbamlp.export import check_opset, export_onnx

        opset = check_opset(opset)  # before the model is read: a bad flag costs nothing
    except (ImportError, ValueError) as err:
        raise CliError(str(err)) from None
    model = load_model(model_path)
    try:
        proto = export_onnx(model, out_file, opset)
    except ValueError as err:
        raise CliError(str(err)) from None
    click.echo(f"wrote {out_file}: {'-'.join(map(str, model.layers))} {model.activation}, "
               f"opset {opset}, IR version {proto.ir_version}")
