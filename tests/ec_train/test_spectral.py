import torch

from ec_train.networks import EdgeGenerator
from ec_train.spectral import fold_spectral_norm, has_spectral_norm


def test_folded_edge_generator_matches_at_256():
    torch.manual_seed(0)
    model = EdgeGenerator()
    model.train()
    with torch.no_grad():  # move u, v away from their init so folding is exercised for real
        for _ in range(3):
            model(torch.rand(1, 3, 32, 32))
    model.eval()
    folded = fold_spectral_norm(model)
    assert has_spectral_norm(model) and not has_spectral_norm(folded)
    assert not any(k.endswith(("_orig", "_u", "_v")) for k in folded.state_dict())
    x = torch.rand(1, 3, 256, 256)
    with torch.no_grad():
        diff = (model(x) - folded(x)).abs().max().item()
    assert diff <= 1e-5
    # the folded weight really is normalised: largest singular value ~1 after power iteration
    w = folded.encoder[1].weight.detach().reshape(64, -1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1) < 0.05


def test_fold_leaves_the_source_model_untouched():
    model = EdgeGenerator(residual_blocks=1, base_channels=8).eval()
    keys = set(model.state_dict())
    fold_spectral_norm(model)
    assert set(model.state_dict()) == keys
