"""CLIP as SocialFusion reads it: LLaVA-style penultimate patch features, transformers'
`hidden_states[-2][:, 1:]` (mm_vision_select_layer=-2, select_feature='patch'), from the CLIP port
at patch 14 (a tiny 28 px config against `CLIPVisionModel`, fp32 <= 1e-5; ViT-L/14-336 by shape)."""

import jax
import numpy as np
import torch
from flax import nnx

from checkpoints_convert import convert, core, families
from checkpoints_convert.clip import vision_tower
from jaxbgs.models import clip
from tests.models.parity import save_twin

TINY = clip.Config(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=28,
    patch_size=14,
    hidden_act="quick_gelu",
)


def test_penultimate_patch_features_match_transformers(tmp_path):
    save_twin("clip", TINY, tmp_path)
    model, _, _ = convert.from_torch("clip", tmp_path)
    pixels = np.random.default_rng(0).standard_normal((3, 1, 28, 28, 3)).astype(np.float32)  # 3 images
    out = nnx.jit(lambda m, x: m(x))(model, pixels)
    features = np.asarray(out.hidden_states[-2][:, 1:])
    state, hf, _ = core.read_checkpoint(tmp_path)
    x = torch.from_numpy(np.ascontiguousarray(pixels[:, 0].transpose(0, 3, 1, 2)))
    with torch.no_grad():
        ref = vision_tower(families.get("clip").torch_from_state(hf, state))(
            pixel_values=x, output_hidden_states=True
        )
    expected = ref.hidden_states[-2][:, 1:].numpy()
    assert features.shape == expected.shape == (3, 4, 32)  # 2x2 patches, CLS dropped
    assert np.abs(features - expected).max() <= 1e-5
    # the penultimate layer is not the last one (nor post_layernorm'd), so the test can tell them apart
    assert np.abs(features - ref.last_hidden_state[:, 1:].numpy()).max() > 1e-2


def test_vit_l14_336_gives_a_24x24_grid_of_1024_wide_features():
    cfg = clip.Config.variant("vit_l14_336")
    assert cfg.num_positions == 24 * 24 + 1
    out = jax.eval_shape(
        lambda x: clip.Model(cfg, rngs=nnx.Rngs(0))(x), jax.ShapeDtypeStruct((2, 1, 336, 336, 3), np.float32)
    )
    assert len(out.hidden_states) == 25  # embeddings (after pre_layrnorm) + 24 layers
    assert out.hidden_states[-2].shape == (2, 577, 1024)  # CLS + 576 patches
