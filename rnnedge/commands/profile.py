"""`rnnedge profile`: latency measured and recorded in the device profile."""

from __future__ import annotations

from pathlib import Path

import click

from rnnedge.commands._common import PROVIDER_CHOICES, emit_json, verbosity_options


@click.command("profile")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--device", help="Device name [default: the profile that matches this host].")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size.")
@click.option("--seq-len", type=int, default=100, show_default=True, help="Sequence length.")
@click.option(
    "--provider",
    default="auto",
    show_default=True,
    help="Execution provider: " + ", ".join(PROVIDER_CHOICES) + ".",
)
@click.option(
    "--strict-provider",
    is_flag=True,
    help="Fail instead of falling back when the provider is unavailable.",
)
@click.option("--threads", type=int, help="CPU threads per operator [default: physical cores].")
@click.option("--warmup", type=int, default=20, show_default=True, help="Untimed runs first.")
@click.option("--runs", type=int, default=200, show_default=True, help="Timed runs.")
@click.option(
    "--devices-dir",
    type=click.Path(path_type=Path),
    default=Path("devices"),
    show_default=True,
    help="Folder of the device profiles to update.",
)
@click.option("--no-store", is_flag=True, help="Measure only; leave the device profile as it is.")
@click.option("--json", "as_json", is_flag=True, help="Print the measurement as JSON.")
@verbosity_options
def profile_command(model: Path, device: str | None, batch: int, seq_len: int, provider: str,
                    strict_provider: bool, threads: int | None, warmup: int, runs: int,
                    devices_dir: Path, no_store: bool, as_json: bool) -> None:  # fmt: skip
    """Measure latency and record it in devices/<device>.yaml."""
    from rnnedge.profiling import profile_model
    from rnnedge.runtime.providers import parse_provider

    result = profile_model(
        model, device=device, provider=parse_provider(provider), batch=batch,
        seq_len=seq_len, threads=threads, warmup=warmup, runs=runs,
        strict_provider=strict_provider, store=not no_store, user_dir=devices_dir,
    )  # fmt: skip
    if as_json:
        emit_json({"device": result.device, "profile": result.profile_path, **result.measurement})
        return
    m = result.measurement
    stats = result.latency
    click.echo(
        f"{m['model']} on {result.device} ({m['provider']}, {m['precision']}, batch {batch}, "
        f"length {seq_len}, {m['threads']} threads)"
    )
    click.echo(
        f"latency ms: p50 {stats.p50_ms:.4f}  p90 {stats.p90_ms:.4f}  p99 {stats.p99_ms:.4f}  "
        f"mean {stats.mean_ms:.4f}  ({stats.count} runs after {warmup} warm-up)"
    )
    click.echo(
        f"throughput {m['throughput_seq_per_s']:,.1f} sequences/s; cold start "
        f"{m['cold_start_ms']:.1f} ms"
    )
    if result.profile_path is not None:
        click.echo(f"recorded in {result.profile_path}")
