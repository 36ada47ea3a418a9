"""The command line: parse arguments, call one library function per verb, print, pick the exit code.

Only this module prints errors: a `DltrainError` is one paragraph and exit 2 (no traceback unless
--debug). Nothing heavy is imported at the top, so `dltrain --help` answers without torch.
"""

from __future__ import annotations

import os
import shlex
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(
    name="dltrain",
    help="Train PyTorch models from a YAML file: data, architecture and loss in one config.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}


def _version(value: bool) -> None:
    """--version: dltrain's version, and torch's as installed (read from its metadata, not imported)."""
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from dltrain import __version__

    try:
        torch = f", torch {version('torch')}"
    except PackageNotFoundError:
        torch = ", torch not installed"
    print(f"dltrain {__version__}{torch}")
    raise typer.Exit(0)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)] = False,
) -> None:
    _state["debug"] = debug


def _run(action: Callable[[], object], heavy: str | None = None) -> None:
    """Call the library; turn its errors into a message and an exit code.

    `heavy`: the module the action imports torch with, imported first with the garbage collector
    kept off what it makes (dltrain.memory).
    """
    from dltrain.errors import DltrainError

    try:
        if heavy is not None:
            from dltrain.memory import load

            load(heavy)
        action()
    except DltrainError as error:
        if _state["debug"]:
            traceback.print_exc()
        _print_error(str(error))
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        _print_error("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # standard output's reader stopped (| head): stop as a filter does, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # what is still buffered goes nowhere, not into a second error
        raise typer.Exit(141) from None
    except OSError as error:  # a path that cannot be made or written (a full disk, a read-only folder)
        if _state["debug"]:
            traceback.print_exc()
        where = f"{error.filename}: " if error.filename else ""
        _print_error(f"{where}{error.strerror or error}. Nothing was half-written; give a path where dltrain can write")
        raise typer.Exit(1) from None
    except Exception as error:  # interrupted training arrives as its own type
        from dltrain.train.distributed import peer_failure
        from dltrain.train.trainer import Interrupted

        if isinstance(error, Interrupted):
            raise typer.Exit(128 + error.signum) from None
        why = peer_failure(error)
        if why is not None:  # under torchrun: another rank stopped; its own log says why
            if _state["debug"]:
                traceback.print_exc()
            rank = os.environ.get("RANK", "?")
            _print_error(
                f"rank {rank}: another process of this torchrun job stopped ({why}), so this one stops too; "
                "its own lines above say why. last.pt holds the last finished epoch: run the same torchrun "
                "command with `fit --resume RUN` to go on"
            )
            raise typer.Exit(1) from None
        raise


def _print_error(message: str) -> None:
    from dltrain.console import err

    err().print(f"[bold red]error:[/bold red] {message}", markup=True, highlight=False) if "[" not in message else err().print(f"error: {message}", markup=False)


@app.command(context_settings={"allow_extra_args": False})
def fit(
    args: Annotated[Optional[list[str]], typer.Argument(metavar="[CONFIG] [KEY=VALUE]...", help="A config file and overrides like optimizer.lr=0.01.", show_default=False)] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="The run directory (default: runs/<name>).")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = None,
    init_from: Annotated[Optional[Path], typer.Option("--init-from", help="Start from another run's weights.", metavar="RUN_OR_CKPT")] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue a stopped run in its own directory.", metavar="RUN")] = None,
    allow_changed_data: Annotated[bool, typer.Option("--allow-changed-data", help="With --resume: continue although the run's data changed.")] = False,
) -> None:
    """Train a model from a config; write metrics and checkpoints to a run directory."""

    def action():
        from dltrain.errors import UsageError

        overrides = [a for a in args or [] if "=" in a]
        configs = [a for a in args or [] if "=" not in a]
        if len(configs) > 1:
            raise UsageError(f"expected one config file, found {len(configs)}: {', '.join(configs)} (overrides are KEY=VALUE)")
        if resume is not None and (configs or out or init_from or device):
            given = ", ".join(x for x, on in ((f"the config {configs[0]}" if configs else "", bool(configs)), ("--out", bool(out)), ("--init-from", bool(init_from)), ("--device", bool(device))) if on)
            raise UsageError(f"--resume continues a run with its own config, folder, weights and device: leave out {given} (train.* overrides may go with it)")
        if allow_changed_data and resume is None:
            raise UsageError("--allow-changed-data goes with --resume RUN: a new run reads its data as it is")
        if resume is None and not configs:
            raise UsageError("give a config file (dltrain fit configs/iris.yaml), or --resume RUN")
        if resume is None and not Path(configs[0]).exists():
            raise UsageError(f"config file not found: {configs[0]}")

        from dltrain.fitting import fit as run_fit
        from dltrain.summary import print_fit
        from dltrain.train.trainer import Interrupted

        try:
            result = run_fit(
                configs[0] if configs else None,
                overrides,
                out=out,
                device=device,
                init_from=init_from,
                resume=resume,
                allow_changed_data=allow_changed_data,
            )
        except Interrupted as stop:
            from dltrain.console import err

            run = shlex.quote(str(stop.run_dir or resume))
            err().print(f"\nstopped by {stop}: last.pt saved. Continue with: dltrain fit --resume {run}", markup=False)
            raise
        if result.main:
            print_fit(result)

    _run(action, heavy="dltrain.fitting")


@app.command()
def check(
    config: Annotated[Path, typer.Argument(help="The config file.", show_default=False)],
    overrides: Annotated[Optional[list[str]], typer.Argument(metavar="[KEY=VALUE]...", help="Overrides.", show_default=False)] = None,
) -> None:
    """Validate a config, build its data and model, print them; train nothing."""

    def action():
        from dltrain.errors import UsageError
        from dltrain.fitting import check as run_check
        from dltrain.summary import print_check

        bad = [o for o in overrides or [] if "=" not in o]
        if bad:
            raise UsageError(f"expected KEY=VALUE overrides after the config, found {', '.join(bad)}")
        from dltrain.tools.lrfind import with_placeholder

        print_check(run_check(config, with_placeholder(config, overrides or [])))

    _run(action, heavy="dltrain.fitting")


@app.command("lr-find")
def lr_find(
    config: Annotated[Path, typer.Argument(help="The config file.", show_default=False)],
    overrides: Annotated[Optional[list[str]], typer.Argument(metavar="[KEY=VALUE]...", help="Overrides.", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Draw the curve to this PNG (needs matplotlib).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training batches in the test, the rate growing from 1e-7 to 10.")] = 100,
    device: Annotated[Optional[str], typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")] = None,
) -> None:
    """The learning-rate range test: a rate to put in optimizer.lr (nothing of a run is written)."""

    def action():
        from dltrain.errors import UsageError
        from dltrain.tools.lrfind import describe
        from dltrain.tools.lrfind import lr_find as run_lr_find

        bad = [o for o in overrides or [] if "=" not in o]
        if bad:
            raise UsageError(f"expected KEY=VALUE overrides after the config, found {', '.join(bad)}")
        if not config.exists():
            raise UsageError(f"config file not found: {config}")
        result = run_lr_find(config, overrides or [], output=output, device=device, steps=steps)
        from dltrain.console import note, out

        out().print(f"suggested lr: {result.suggestion:.3g}  ({describe(result)})", markup=False)
        if result.picture is not None:
            note(f"written: {result.picture}")
        note(f"use it with: dltrain fit {shlex.quote(str(config))} optimizer.lr={result.suggestion:.3g}")

    _run(action, heavy="dltrain.fitting")


@app.command(context_settings={"allow_extra_args": False})
def cv(
    args: Annotated[list[str], typer.Argument(metavar="CONFIG [KEY=VALUE]...", help="A config and overrides.", show_default=False)],
    folds: Annotated[int, typer.Option("--folds", help="Folds: each one is the test split of one run.")] = 5,
    out: Annotated[Optional[Path], typer.Option("--out", help="The folder for the folds' runs (default: runs/<name>-cv).")] = None,
) -> None:
    """k-fold cross-validation: a run per fold, the test metrics' mean and std, out-of-fold predictions."""

    def action():
        from dltrain.errors import UsageError

        overrides = [a for a in args if "=" in a]
        configs = [a for a in args if "=" not in a]
        if len(configs) != 1:
            raise UsageError(f"expected one config file, found {len(configs)}{': ' + ', '.join(configs) if configs else ''} (overrides are KEY=VALUE)")
        if not Path(configs[0]).exists():
            raise UsageError(f"config file not found: {configs[0]}")
        from dltrain.console import note
        from dltrain.console import out as stdout
        from dltrain.tools.cv import cv as run_cv

        result = run_cv(configs[0], overrides, folds=folds, out=out)
        console = stdout()
        console.print(f"{len(result.runs)}-fold cross-validation, {result.rows} out-of-fold predictions:", markup=False)
        for name, value in result.metrics.items():
            console.print(f"  test {name}: {value['mean']:.4g} ± {value['std']:.2g}", markup=False)
        note(f"written: {result.folder / 'cv.json'}, {result.folder / 'oof.csv'} and the runs {result.folder}/fold-1 ... fold-{len(result.runs)}")

    _run(action, heavy="dltrain.fitting")


@app.command(context_settings={"allow_extra_args": False})
def tune(
    args: Annotated[list[str], typer.Argument(metavar="CONFIG [KEY=VALUE]...", help="A config with a tune: section, and overrides.", show_default=False)],
    trials: Annotated[Optional[int], typer.Option("--trials", min=1, help="Trials in the study (default: tune.trials).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Trials at a time, each a process of its own.")] = 1,
    storage: Annotated[Optional[str], typer.Option("--storage", help="An Optuna storage url shared by several processes or machines (default: SQLite in runs/<name>-tune).", metavar="URL")] = None,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    resume: Annotated[Optional[str], typer.Option("--resume", hidden=True)] = None,
) -> None:
    """Search the values a config's tune: section names; each trial is a run directory under runs/<name>-tune."""

    def action():
        from dltrain.errors import UsageError

        if resume is not None:
            raise UsageError("dltrain tune has no --resume: run the same command again and the study goes on (finished trials are kept, unfinished ones run again)")
        overrides = [a for a in args if "=" in a]
        configs = [a for a in args if "=" not in a]
        if len(configs) != 1:
            raise UsageError(f"expected one config file, found {len(configs)}{': ' + ', '.join(configs) if configs else ''} (overrides are KEY=VALUE)")
        if not Path(configs[0]).exists():
            raise UsageError(f"config file not found: {configs[0]}")
        from dltrain.tools.tune import TuneStopped
        from dltrain.tools.tune import tune as run_tune

        try:
            result = run_tune(configs[0], overrides, trials=trials, jobs=jobs, storage=storage, worker=worker)
        except TuneStopped as stop:
            if stop.result is not None:
                from dltrain.summary import print_tune

                print_tune(stop.result)
                from dltrain.console import err

                err().print(f"\nstopped by {stop}: run the same command again to go on with the study", markup=False)
            raise typer.Exit(128 + stop.signum) from None
        if result is not None:
            from dltrain.summary import print_tune

            print_tune(result)

    _run(action, heavy="dltrain.fitting")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(metavar="RUN_OR_CKPT", help="A run directory (its best.pt) or a checkpoint.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="test, val or train: the run's own split.")] = "test",
    data: Annotated[Optional[str], typer.Option("--data", help="Evaluate a whole table file (or a folder of class subfolders, or a url) instead.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    with_report: Annotated[bool, typer.Option("--report", help="Also write the HTML report (dltrain report) beside evaluate's JSON.")] = False,
    allow_changed_data: Annotated[
        bool, typer.Option("--allow-changed-data", help="Evaluate the run's own split although its data changed since training (the result says so).")
    ] = False,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Also score the training majority (or mean) and a linear model on the same inputs.")
    ] = True,
) -> None:
    """Score a trained model on its test split (or another), or on a table file, beside what a
    constant and a linear model fitted on the same training rows score."""

    def action():
        import json

        from dltrain.errors import UsageError
        from dltrain.inference import evaluate as run_evaluate

        if split not in ("train", "val", "test"):
            raise UsageError(f"--split must be train, val or test, found {split!r}")
        if allow_changed_data and data is not None:
            raise UsageError("--allow-changed-data goes with the run's own split: --data FILE is evaluated as it is")
        if allow_changed_data and with_report:
            raise UsageError("--report reads the run's data as it was trained: with --allow-changed-data leave out --report (the JSON result says what was evaluated)")
        result = run_evaluate(run, split, data, allow_changed_data=allow_changed_data, baseline=baseline)
        if as_json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            from dltrain.summary import print_evaluation

            print_evaluation(result)
        if with_report:
            from dltrain.console import note
            from dltrain.tools.report import report as run_report

            note(f"written: {run_report([run], split, None, data, baseline=baseline).path}")

    _run(action, heavy="dltrain.inference")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(metavar="RUN_OR_CKPT", help="A run directory (its best.pt) or a checkpoint.", show_default=False)],
    input: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="A table of rows to predict (the target may be absent); image files, a folder or a glob; with --query, an SQLite file or a database url.",
            show_default=False,
        ),
    ],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the predictions here: CSV, or TSV, Parquet, JSON lines by the suffix (default: CSV on standard output).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Rows per batch.")] = None,
    query: Annotated[Optional[str], typer.Option("--query", help="Predict the rows of this SQL query on INPUT, a database (passwords as ${VAR} or PGPASSWORD).")] = None,
    on_error: Annotated[Optional[str], typer.Option("--on-error", help="skip: leave unreadable files out with a warning; raise: stop (default: the run's data.on_error).")] = None,
) -> None:
    """Predict a table's rows: a CSV with the id, the prediction and each class's probability."""

    def action():
        from dltrain.inference import predict as run_predict
        from dltrain.inference import predict_chunks

        if output is None:  # chunk by chunk as they are made: memory holds one chunk
            for n, chunk in enumerate(predict_chunks(run, input, batch_size, query=query, on_error=on_error)):
                sys.stdout.write(chunk.to_csv(index=False, header=n == 0))
                sys.stdout.flush()
        else:
            result = run_predict(run, input, output, batch_size, query=query, on_error=on_error)
            from dltrain.console import note

            note(f"{len(result)} predictions written to {output}")

    _run(action, heavy="dltrain.inference")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Run directories; several are compared.", show_default=False)],
    split: Annotated[str, typer.Option("--split", help="test, val or train: the run's own split.")] = "test",
    data: Annotated[Optional[Path], typer.Option("--data", help="Report on a labelled table file instead.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file (default: RUN/report_<split>.html).")] = None,
    baseline: Annotated[
        bool, typer.Option("--baseline/--no-baseline", help="Also show the training majority (or mean) and a linear model on the same rows, as evaluate does.")
    ] = True,
) -> None:
    """One self-contained HTML page about a run: metrics beside the baselines, curves, confusion matrix, ROC, calibration, worst examples."""

    def action():
        from dltrain.console import note
        from dltrain.errors import UsageError
        from dltrain.tools.report import report as run_report

        if split not in ("train", "val", "test"):
            raise UsageError(f"--split must be train, val or test, found {split!r}")
        written = run_report(runs, split, output, data, baseline=baseline)
        note(f"written: {written.path} ({written.rows} rows of {written.runs} run(s))")

    _run(action, heavy="dltrain.inference")


@app.command()
def serve(
    run: Annotated[Path, typer.Argument(metavar="RUN_OR_CKPT", help="A run directory (its best.pt) or a checkpoint.", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="The port.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Server processes, each with the model loaded (more cores, more requests at once).")] = 1,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Torch threads per process (0: torch's default, the cores, shared out between --workers).")] = 0,
    allow_paths: Annotated[Optional[Path], typer.Option("--allow-paths", help="JSON rows may name files under this folder.", metavar="DIR")] = None,
    max_body: Annotated[int, typer.Option("--max-body", min=1, help="The largest request in bytes.")] = 10 * 1024 * 1024,
    wait_ms: Annotated[float, typer.Option("--batch-wait-ms", min=0, help="How long a batch that is not full may wait for more requests (0: requests ready together, or that came while the model ran, share it; nothing waits).")] = 0.0,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="The most rows through the model at once.")] = 256,
) -> None:
    """Serve a run over HTTP: POST rows (or files) to /predict; GET /metadata, /health, /docs."""

    def action():
        from dltrain.tools.serve import Settings
        from dltrain.tools.serve import serve as run_serve

        if allow_paths is not None and not allow_paths.is_dir():
            from dltrain.errors import UsageError

            raise UsageError(f"--allow-paths {allow_paths}: not a folder")
        run_serve(run, host, port, workers, Settings(max_body=max_body, wait_ms=wait_ms, max_batch=max_batch, allow_paths=allow_paths, batching=max_batch > 1, threads=threads or None))

    _run(action, heavy="dltrain.inference")


@app.command()
def init(
    data: Annotated[str, typer.Argument(help="A table file, or a folder with one subfolder per class (or a url: s3://, gs://, az://, https://).", show_default=False)],
    target: Annotated[Optional[str], typer.Option("--target", help="The column to predict (a folder's is `label`).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the config here (default: print it).")] = None,
) -> None:
    """Write a starter config for a table or an image folder, commented key by key."""

    def action():
        from dltrain.tools.init import init as run_init

        text = run_init(data, target, output)
        if output is None:
            sys.stdout.write(text)
        else:
            from dltrain.console import note

            note(f"written: {output}. Check it with: dltrain check {output}")

    _run(action)


@app.command()
def schema(
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write the schema here (default: print it).")] = None,
) -> None:
    """Print the JSON Schema of the config format, for editors that complete and check YAML."""

    def action():
        import json

        from dltrain.tools.schema import config_schema

        text = json.dumps(config_schema(), indent=1) + "\n"
        if output is None:
            sys.stdout.write(text)
        else:
            from dltrain.files import write_output

            def marked(path: Path) -> bool:  # the committed schema/dltrain.schema.json is regenerated in place
                return "https://dltrain.dev/schema/config.json" in path.read_text(errors="replace")[:500]

            write_output(output, text.encode(), "--output", "is not a dltrain schema", marked)
            from dltrain.console import note

            note(f"written: {output}")

    _run(action)


@app.command()
def layers(
    name: Annotated[Optional[str], typer.Argument(help="One layer: its arguments in full.", show_default=False)] = None,
) -> None:
    """List the layers a config can name (or one layer's arguments)."""

    def action():
        from dltrain.summary import print_layer, print_layers

        print_layer(name) if name else print_layers()

    _run(action)


@app.command()
def plot(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="Run directories, overlaid.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The PNG (default: RUN/curves.png, or curves.png for several runs).")] = None,
) -> None:
    """Training curves as a PNG: loss and the monitored metric per epoch, best epoch marked."""

    def action():
        from dltrain.console import note
        from dltrain.tools.plot import plot as run_plot

        result = run_plot(runs, output)
        note(f"written: {result.path} ({result.curves} curves of {result.runs} run(s))")

    _run(action)


@app.command()
def runs(
    folder: Annotated[Path, typer.Argument(help="Where the runs are.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option("--name", help="Only the runs of this name (the run folder's or the config's; a glob: iris*).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="Only the runs whose data source holds this text.")] = None,
) -> None:
    """A table of the runs and their best results: grouped by the data they trained on, best first in each."""

    def action():
        from dltrain.summary import print_runs
        from dltrain.tools.runs import group_runs, list_runs

        rows = list_runs(folder, name, data)
        if not rows:
            print_runs(rows, folder if name is None and data is None else f"{folder} that match --name/--data")
            return
        for n, (heading, group) in enumerate(group_runs(rows)):
            print(("\n" if n else "") + heading)
            print_runs(group, folder)

    _run(action)


cache_app = typer.Typer(help="What dltrain keeps in its cache folder (DLTRAIN_CACHE, ~/.cache/dltrain), and clearing it.", no_args_is_help=False)
app.add_typer(cache_app, name="cache")


@cache_app.callback(invoke_without_command=True)
def _cache(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="The listing as JSON.")] = False,
) -> None:
    """The cache folder, each entry in it with its size and file count, and the total (as cache list)."""
    if context.invoked_subcommand is None:
        cache_list(as_json)


@cache_app.command("list")
def cache_list(
    as_json: Annotated[bool, typer.Option("--json", help="The listing as JSON.")] = False,
) -> None:
    """The cache folder, each entry in it with its size and file count, and the total."""

    def action():
        from dltrain.tools.cache import human, list_cache

        listing = list_cache()
        if as_json:
            import json

            sys.stdout.write(json.dumps(listing.as_dict(), indent=1) + "\n")
            return
        if not listing.exists:
            print(f"{listing.folder}: empty (the folder is not there yet; set DLTRAIN_CACHE to cache elsewhere)")
            return
        print(f"{listing.folder}:")
        width = max([len(e.name) for e in listing.entries] + [5])
        for entry in listing.entries:
            print(f"  {entry.name:<{width}}  {human(entry.bytes):>10}  {entry.files} file(s)")
        print(f"  {'total':<{width}}  {human(listing.bytes):>10}  {listing.files} file(s)")

    _run(action)


@cache_app.command("clear")
def cache_clear(
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Clear without asking.")] = False,
) -> None:
    """Remove everything in the cache folder; the next run decodes or fetches what it needs again."""

    def action():
        import click

        from dltrain.tools.cache import check_clearable, clear_cache, human, list_cache

        listing = list_cache()
        if not listing.exists or not listing.entries:
            print(f"{listing.folder}: already empty")
            return
        check_clearable(listing.folder)
        try:
            agreed = yes or typer.confirm(f"remove {listing.files} file(s), {human(listing.bytes)}, from {listing.folder}?", default=False, err=True)
        except (typer.Abort, click.exceptions.Abort):  # no answer (stdin closed): as no
            agreed = False
        if not agreed:
            if not yes and not sys.stdin.isatty():  # the answer (or none) was not echoed: end the prompt's line
                sys.stderr.write("\n")
            _print_error("nothing removed: answer y, or give --yes to clear without asking")
            raise typer.Exit(1)
        clear_cache(listing.folder)
        print(f"cleared {listing.folder}: {listing.files} file(s), {human(listing.bytes)} removed")

    _run(action)


@app.command()
def export(
    run: Annotated[Path, typer.Argument(metavar="RUN_OR_CKPT", help="A run directory (its best.pt) or a checkpoint.", show_default=False)],
    format: Annotated[str, typer.Option("--format", help="torchscript, export (torch.export) or onnx.")] = "torchscript",
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The folder (default: RUN/export).")] = None,
) -> None:
    """Save the model to run without dltrain, with its encoders as JSON beside it."""

    def action():
        from dltrain.console import note
        from dltrain.export import export as run_export

        result = run_export(run, format, output)
        note(f"written: {result.model} and {result.encoders}")

    _run(action, heavy="dltrain.export")


def _known_tempdir() -> None:
    """Name the temporary folder instead of letting Python probe for one by writing a file in each
    candidate: on a full disk the probe fails, and libraries that ask for it at import (dill, which
    torch.utils.data imports when it is installed) would stop a command that writes nothing there."""
    import tempfile

    if tempfile.tempdir is None:
        for candidate in (os.environ.get("TMPDIR"), os.environ.get("TEMP"), os.environ.get("TMP"), "/tmp", "/var/tmp"):
            if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
                tempfile.tempdir = candidate
                return


def main() -> None:
    """The `dltrain` command: the app, then an exit that skips tearing the interpreter down."""
    _known_tempdir()
    try:
        app(prog_name="dltrain")
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    _exit(code)


def _exit(code: int) -> None:
    """End the process as Python would, less the clean-up of every module and object it made.

    Freeing torch's and pandas' modules one by one takes about a second on this machine after any
    command that trained or predicted; nothing of dltrain's needs it (its files are closed and
    renamed when written). Exit handlers still run and output is flushed; while another thread is
    working (one that Python would wait for), the ordinary exit is taken instead.
    """
    import atexit
    import os
    import threading

    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (dltrain ... | head)
            pass
    os._exit(code)


if __name__ == "__main__":
    main()
