"""What one request, job or connection may take from the server, and how it is refused.

Every limit has a `numbamlp serve` flag (the field's name, dashed) and a default that lets a
team's ordinary work through and stops a typo or an attacker from taking the machine:
jobs and uploads past a limit are refused at submit with a 422 naming the limit and its
flag; connections past ``max_connections`` get a 503 and are closed; a request whose
headers or body come too slowly is cut off.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Limits:
    max_request_mb: float = 64           # one request body
    max_dataset_mb: float = 2048         # an uploaded data set once decompressed (float64 X)
    max_params: int = 50_000_000         # parameters of one model
    max_epochs: int = 10_000             # epochs of one job
    max_batch_size: int = 65_536         # rows of one minibatch (a step's workspace grows with it)
    max_job_minutes: float = 24 * 60     # wall time of one job in its stack, then it fails
    time_slice_s: float = 60             # a stack's turn while other jobs wait, then it is paused
    max_connections: int = 512           # open HTTP connections (also kept under the open-file limit)
    header_timeout_s: float = 10         # to send a request's headers
    body_timeout_s: float = 120          # to send its body, once the headers are in


HELP = {
    "max_request_mb": "Largest request body accepted.",
    "max_dataset_mb": "Largest uploaded data set, decompressed (refused before it is inflated).",
    "max_params": "Most parameters of one job's model.",
    "max_epochs": "Most epochs of one job.",
    "max_batch_size": "Largest batch_size of a job.",
    "max_job_minutes": "Wall time in its stack after which a job is stopped and fails (its stack-mates go on).",
    "time_slice_s": "Seconds a stack trains while other jobs wait; then it is checkpointed and paused, and goes "
                    "on after them (bit for bit).",
    "max_connections": "Most open HTTP connections; more get 503 and are closed.",
    "header_timeout_s": "Seconds a client has to send a request's headers.",
    "body_timeout_s": "Seconds a client has to send a request's body, once its headers are in.",
}
assert set(HELP) == {f.name for f in fields(Limits)}


def flag(name: str) -> str:
    """A limit's `numbamlp serve` flag."""
    return "--" + name.replace("_", "-")


def parameter_count(features: int, hidden: list[int], outputs: int) -> int:
    """Weights and biases of an MLP features → hidden... → outputs."""
    widths = [features, *hidden, outputs]
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))


def job_problem(config, features: int, outputs: int, limits: Limits) -> str | None:
    """Which limit a job's TrainConfig passes (naming the field, the limit and its flag), if any."""
    if config.epochs > limits.max_epochs:
        return f"epochs: {config.epochs} is more than this server's limit of {limits.max_epochs} ({flag('max_epochs')})"
    if config.batch_size > limits.max_batch_size:
        return (f"batch_size: {config.batch_size} is more than this server's limit of {limits.max_batch_size} "
                f"({flag('max_batch_size')})")
    params = parameter_count(features, list(config.model.hidden), outputs)
    if params > limits.max_params:
        return (f"model.hidden: {params:,} parameters is more than this server's limit of {limits.max_params:,} "
                f"({flag('max_params')})")
    return None


NPZ_ARRAYS_READ = ("X", "y", "X_test", "y_test")  # what numbamlp.data reads of an .npz


def npz_decompressed_bytes(path) -> int:
    """What an .npz's arrays take once read, from each read member's .npy header (the zip's
    own sizes can lie): a zip bomb is measured before anything is decompressed.  Members
    the loader does not read (a README, another array) are never inflated and do not count.
    ValueError if a member it reads is not an .npy array, or cannot be measured."""
    import zipfile

    from numpy.lib import format as npy

    total = 0
    with zipfile.ZipFile(path) as archive:
        for member in archive.infolist():
            if member.filename.removesuffix(".npy") not in NPZ_ARRAYS_READ:
                continue
            with archive.open(member) as file:  # (reads the header only: a few hundred bytes)
                version = npy.read_magic(file)
                shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else
                                   npy.read_array_header_2_0)(file)
            total += int(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 8)  # (read as float64)
    return total


def parquet_decompressed_bytes(path, limit: int) -> int:
    """What a Parquet file's columns take once decoded, counted batch by batch and stopped
    past ``limit`` (its footer's sizes do not tell: a dictionary-encoded text column of
    kilobytes can decode to gigabytes).  Memory meanwhile: one batch."""
    import pyarrow.parquet as pq

    total = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        total += max(batch.nbytes, batch.num_rows * batch.num_columns * 8)  # (numbers are read as float64)
        if total > limit:
            break
    return total


def compressed_text_bytes(path, limit: int) -> int:
    """A compressed CSV's size once decompressed, streamed and counted, stopped past
    ``limit`` (a few megabytes of gzip can be gigabytes of text).  Memory: one block."""
    import pyarrow as pa

    total = 0
    with pa.input_stream(str(path), compression="detect") as stream:
        while total <= limit and (block := stream.read(1 << 20)):
            total += len(block)
    return total
