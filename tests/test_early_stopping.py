import torch

from gr_toolkit.training.early_stopping import BestStateKeeper


def test_keeps_best_state_and_stops_after_patience():
    model = torch.nn.Linear(2, 1, bias=False)
    keeper = BestStateKeeper(patience=2)
    for epoch, (score, value) in enumerate([(0.2, 1.0), (0.5, 2.0), (0.4, 3.0), (0.5, 4.0)], start=1):
        with torch.no_grad():
            model.weight.fill_(value)
        keeper.update(model, score, epoch)
        # A tie is not an improvement: epochs 3 and 4 are both stale.
        assert keeper.should_stop == (epoch == 4)
    assert (keeper.best, keeper.best_epoch, keeper.stale) == (0.5, 2, 2)
    keeper.restore(model)
    assert torch.equal(model.weight, torch.full((1, 2), 2.0))  # epoch 2's weights, not a reference to them


def test_zero_patience_never_stops_and_restore_without_update_is_a_noop():
    model = torch.nn.Linear(2, 1, bias=False)
    before = model.weight.detach().clone()
    keeper = BestStateKeeper(patience=0)
    keeper.restore(model)
    assert torch.equal(model.weight, before) and keeper.best == -1.0 and keeper.best_epoch == 0
    for epoch in range(1, 6):
        keeper.update(model, 0.0 if epoch == 1 else -0.5, epoch)
    assert keeper.stale == 4 and not keeper.should_stop


def test_epoch_line_shows_the_selection_metric_only_when_evaluated():
    from gr_toolkit.training.early_stopping import epoch_line

    rec = {"epoch": 3, "loss": 1.23456, "seconds": 12.6}
    assert epoch_line("dssm", rec, "recall@10") == "dssm epoch 3: loss 1.2346 (13s)"
    rec["recall@10"] = 0.5
    assert epoch_line("sasrec", rec, "recall@10") == "sasrec epoch 3: loss 1.2346 valid recall@10 0.5000 (13s)"
