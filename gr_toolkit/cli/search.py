"""``gr-toolkit search --run DIR "query text" [--top 10]``: retrieve products for a query with a trained
search run and print rank, item id, title and score (the sequence log-probability of its identifier)."""

from __future__ import annotations

from pathlib import Path

import typer


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def search(
    query: str = typer.Argument(..., help="the query text"),
    run: Path = typer.Option(..., "--run", help="run directory of a model trained on query text"),
    top: int = typer.Option(10, "--top", help="how many items to print"),
    beam: int | None = typer.Option(None, "--beam", help="beam size (default max(50, --top))"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
) -> None:
    """Retrieve the top items for QUERY with a trained run."""
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.data.types import DataError
    from gr_toolkit.retrieval.retriever import GenerativeRetrieverRunner
    from gr_toolkit.training.run import RunDir

    try:
        if top < 1:
            raise ValueError(f"--top must be >= 1, got {top}")
        if beam is not None and beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        if not query.strip():
            raise ValueError("the query is empty")
        runner = GenerativeRetrieverRunner.load(run, device=device)
        catalog = RunDir(run).read_catalog()
        items, scores = runner.retrieve_text([query], top_k=top, beam_size=beam or max(50, top))
    except typer.Exit:
        raise
    except (DataError, ArtifactError, ValueError, KeyError) as e:
        _fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
        return
    ids, titles = catalog["ids"], catalog.get("titles")
    typer.echo(f"query: {query!r}  ({runner.manifest.get('dataset')}, {runner.manifest.get('model')})")
    shown = 0
    for rank, (item, score) in enumerate(zip(items[0].tolist(), scores[0].tolist(), strict=True), start=1):
        if item < 0:
            continue
        title = titles[item] if titles else ""
        typer.echo(f"{rank:>3}  {ids[item]:<16} {score:>9.4f}  {title}")
        shown += 1
    if shown < top:
        typer.echo(f"({shown} valid identifiers in the beam; raise --beam for more)")
