"""``gr-toolkit train DATASET --index DIR --model seater|t5|causal [--losses gen,align,rank] --out DIR``.

Options come from three config dataclasses: the model's (``SeaterConfig``: ``--layers``, ``--d_model``,
``--dropout`` ...), ``TrainConfig`` (``--epochs``, ``--lr``, ``--align_weight``, ``--rank_beta`` ...)
and the source featurizer (``--text_vocab`` sentencepiece pieces for query text). Order: defaults,
then ``--config YAML`` (sections ``model:``, ``train:``, ``featurizer:``, or one flat mapping), then
``--key value`` pairs. Each name goes to the one dataclass that has it; unknown names are an error.

Re-running the same command on an unfinished run directory resumes it from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import typer

from gr_toolkit.cli.common import read_yaml_mapping
from gr_toolkit.config import ConfigError, from_dict, parse_cli_overrides


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


FEATURIZER_KEYS = {"text_vocab": "vocab_size", "title_field": "title_field", "encoder": "encoder",
                  "max_query_len": "max_query_len"}


def split_options(model_cls: type, flat: dict[str, Any], where: str) -> tuple[dict, dict, dict]:
    """Route flat ``name -> value`` options to (model, train, featurizer) by field name."""
    from gr_toolkit.training.config import TrainConfig

    model_fields = {f.name for f in dataclasses.fields(model_cls.config_class)}
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    model, train, feat = {}, {}, {}
    for key, value in flat.items():
        if key in model_fields:
            model[key] = value
        elif key in train_fields:
            train[key] = value
        elif key in FEATURIZER_KEYS:
            feat[FEATURIZER_KEYS[key]] = value
        else:
            valid = sorted(model_fields | train_fields | set(FEATURIZER_KEYS))
            raise ConfigError(f"{where}: unknown option {key!r}; valid: {', '.join(valid)}")
    return model, train, feat


def read_train_yaml(path: Path, model_cls: type) -> tuple[dict, dict, dict]:
    data = read_yaml_mapping(path)
    sections = {k: data.pop(k) for k in ("model", "train", "featurizer") if isinstance(data.get(k), dict)}
    model, train, feat = split_options(model_cls, data, str(path))
    model.update(sections.get("model", {}))
    train.update(sections.get("train", {}))
    feat.update({FEATURIZER_KEYS.get(k, k): v for k, v in sections.get("featurizer", {}).items()})
    return model, train, feat


def train(
    ctx: typer.Context,
    dataset: str = typer.Argument(..., help="dataset name (synthetic, beauty, homedepot, bestbuy, esci:PATH, ...)"),
    index: Path = typer.Option(..., "--index", help="index directory built by `gr-toolkit index`"),
    out: Path = typer.Option(..., "--out", help="run directory (resumed when it holds an unfinished run)"),
    model: str = typer.Option("seater", "--model", help="seater | t5 | causal"),
    losses: str | None = typer.Option(None, "--losses", help="comma-separated loss plug-ins (default gen,align,rank)"),
    epochs: int | None = typer.Option(None, "--epochs", help="maximum epochs"),
    config: Path | None = typer.Option(None, "--config", help="YAML with model:/train:/featurizer: options"),
    device: str | None = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:1"),
    seed: int | None = typer.Option(None, "--seed", help="training seed"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="data root (default $GR_DATA_DIR, then ../shared/data)"),
    data_seed: int = typer.Option(0, "--data-seed", help="seed passed to the dataset loader"),
) -> None:
    """Train a generative retriever on DATASET against an index; extra --key value pairs set options."""
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.data.types import DataError

    try:
        from gr_toolkit.models import model_class

        model_cls = model_class(model)
        m_opts, t_opts, f_opts = read_train_yaml(config, model_cls) if config else ({}, {}, {})
        cm, ct, cf = split_options(model_cls, parse_cli_overrides(list(ctx.args)), "command line")
        m_opts.update(cm)
        t_opts.update(ct)
        f_opts.update(cf)
        for key, value in (("losses", losses), ("epochs", epochs), ("device", device), ("seed", seed)):
            if value is not None:
                t_opts[key] = value
        run_training(dataset, index, out, model, m_opts, t_opts, f_opts, data_dir, data_seed)
    except typer.Exit:
        raise
    except (ConfigError, DataError, ArtifactError, ValueError, KeyError) as e:
        _fail(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))


train.accepts_overrides = True  # type: ignore[attr-defined]


def run_training(
    dataset_name: str,
    index_dir: Path,
    out: Path,
    model_name: str,
    model_options: dict[str, Any],
    train_options: dict[str, Any],
    featurizer_options: dict[str, Any],
    data_dir: Path | None = None,
    data_seed: int = 0,
    log: Any = typer.echo,
) -> Any:
    """The train command without the CLI: load data and index, fit (or reload) the featurizer, train."""
    from gr_toolkit.artifacts import ArtifactError
    from gr_toolkit.data.featurize import FeaturizerConfig, SourceFeaturizer
    from gr_toolkit.data.loaders import load_dataset
    from gr_toolkit.identifiers.base import load_index
    from gr_toolkit.losses import build_losses
    from gr_toolkit.models import model_class
    from gr_toolkit.training.config import TrainConfig
    from gr_toolkit.training.run import RunDir
    from gr_toolkit.training.sft import train_model

    model_cls = model_class(model_name)
    model_cfg = from_dict(model_cls.config_class, model_options, where="model options")
    train_cfg = from_dict(TrainConfig, train_options, where="train options")
    from gr_toolkit.models.pretrained_lm import PRETRAINED_ALIASES

    lm_alias = getattr(model_cfg, "pretrained_path", "")
    if lm_alias in PRETRAINED_ALIASES and "encoder" not in featurizer_options:
        featurizer_options = {**featurizer_options, "encoder": lm_alias}  # the LM reads its own tokenizer's ids
    if not index_dir.exists():
        raise ArtifactError(f"index directory {index_dir} does not exist (build it with `gr-toolkit index`)")
    ds = load_dataset(dataset_name, data_dir=data_dir, seed=data_seed)
    idx = load_index(index_dir, catalog=ds.catalog)
    run = RunDir(out)
    if run.exists() and (run.featurizer_dir / "manifest.json").exists():
        featurizer = SourceFeaturizer.load(run.featurizer_dir, catalog=ds.catalog)  # resume: same vocabulary
    else:
        if out.exists() and any(out.iterdir()):
            raise ArtifactError(f"{out} exists and is not a run directory; pick a new --out")
        fcfg = from_dict(FeaturizerConfig, {
            "max_history": getattr(model_cfg, "max_history", FeaturizerConfig.max_history),
            "max_query_len": getattr(model_cfg, "max_query_len", FeaturizerConfig.max_query_len),
            "seed": data_seed,
            **featurizer_options,
        }, where="featurizer options")
        featurizer = SourceFeaturizer(fcfg).fit(ds)
    from gr_toolkit.training.sft import check_train_setup, seed_everything

    check_train_setup(ds, train_cfg)  # every check that can fail runs before the run directory exists
    seed_everything(train_cfg.seed)  # model initialisation draws from torch's RNG: same seed, same run
    net = model_cls.build(idx, featurizer, model_cfg)
    losses = build_losses(train_cfg.loss_names(), net.hidden_size, train_cfg.loss_options())
    n_params = sum(p.numel() for p in net.parameters())
    log(f"training {model_name} ({n_params:,} parameters) on {ds.name}: {len(ds.train):,} train / {len(ds.valid):,} "
        f"valid examples, index {index_dir} ({idx.scheme}, {idx.n_items:,} items, vocab {idx.vocab_size:,}), "
        f"losses {train_cfg.losses}")
    result = train_model(net, idx, ds, featurizer, losses, train_cfg, out, model_name=model_name,
                         index_source=index_dir, log=log)
    log(f"run: {out}  best epoch {result.best_epoch} ({train_cfg.select_metric} {result.best_value}), "
        f"{result.epochs_done} epochs, {result.train_seconds:.1f} s training")
    return result
