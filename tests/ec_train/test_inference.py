import numpy as np
import pytest

from ec_train.inference import STAGES, ReferencePipeline
from ec_train.registry import create_generators
from tests.helpers import photo_and_mask


@pytest.fixture(scope="module")
def pipeline():
    edge, inpaint = create_generators("lite")
    return ReferencePipeline(edge, inpaint)


def test_known_region_is_kept_and_hole_is_painted(pipeline):
    img, mask = photo_and_mask("coffee", 96, seed=3)
    img, mask = img[:90, :94], mask[:90, :94]  # not a multiple of 4: padded and cropped back
    times = {}
    out = pipeline.run_batch(img[None], mask[None], timer=lambda s, t: times.__setitem__(s, t))[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    known = mask == 0
    assert np.array_equal(out[known], img[known])
    assert np.abs(out[~known].astype(int) - img[~known]).mean() > 1  # random weights: visibly different
    assert set(times) == set(STAGES) and all(t >= 0 for t in times.values())


def test_official_merge_feeds_the_raw_edge_map(pipeline):
    edge, inpaint = pipeline.edge, pipeline.inpaint
    official = ReferencePipeline(edge, inpaint, merge="official")
    img, mask = photo_and_mask("astronaut", 64, seed=1)
    assert not np.array_equal(pipeline(img, mask), official(img, mask))
    with pytest.raises(ValueError, match="merge"):
        ReferencePipeline(edge, inpaint, merge="nope")
