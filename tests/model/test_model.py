import pytest
import torch

from ofa.errors import InputError
from ofa.model import DecoderCache, OFAConfig, OFAModel

from conftest import text_batch, tiny_config

PAD = 1


@pytest.fixture(scope="module", params=[False, True], ids=["official", "entangled"])
def model(request):
    """The tiny model with positions as attention bias only (every released checkpoint), and
    with positions also added to the embeddings (``entangle_position_embedding``)."""
    torch.manual_seed(0)
    m = OFAModel(tiny_config(entangle_position_embedding=request.param)).eval()
    # random (not init-zero) relative tables and BN stats, so every term matters
    with torch.no_grad():
        for name, p in m.named_parameters():
            if "rel_pos_table" in name or "c_attn" in name or "ln" in name.split(".")[-2]:
                p.add_(torch.randn_like(p) * 0.1)
    return m



def test_presets_match_reference():
    expected = {  # layers, d_model, heads, head_dim, ffn, resnet blocks
        "tiny": (4, 4, 256, 4, 64, 1024, (3, 4, 6)),
        "medium": (4, 4, 512, 8, 64, 2048, (3, 4, 23)),
        "base": (6, 6, 768, 12, 64, 3072, (3, 4, 23)),
        "large": (12, 12, 1024, 16, 64, 4096, (3, 8, 36)),
        "huge": (24, 12, 1280, 16, 80, 5120, (3, 8, 36)),
    }
    for name, (enc, dec, d, h, hd, ffn, res) in expected.items():
        c = OFAConfig.preset(name)
        got = (c.encoder_layers, c.decoder_layers, c.d_model, c.attention_heads, c.head_dim,
               c.ffn_dim, c.resnet_layers)
        assert got == (enc, dec, d, h, hd, ffn, res), name
        assert c.vocab_size == 59457 and c.num_image_positions == 1765
    with pytest.raises(InputError, match="unknown OFA size"):
        OFAConfig.preset("giant")


@pytest.mark.parametrize("name,params", [("tiny", 33_488_336), ("base", 182_238_536)])
def test_parameter_counts(name, params):
    with torch.device("meta"):
        m = OFAModel(OFAConfig.preset(name))
    assert m.num_parameters() == params  # counts from the oracle's key report


def test_config_round_trip():
    c = tiny_config(code_image_size=256)
    assert OFAConfig.from_dict(c.to_dict()) == c
    with pytest.raises(InputError):
        OFAConfig.from_dict({**c.to_dict(), "bogus": 1})


def test_padded_batch_equals_items_alone(model):
    ids = text_batch([7, 4, 10])
    images = torch.randn(3, 3, 64, 64)
    dec = text_batch([5, 3, 6], seed=1)
    with torch.no_grad():
        batch = model(ids, dec, images)
        for i in range(3):
            n, t = int(ids[i].ne(PAD).sum()), int(dec[i].ne(PAD).sum())
            alone = model(ids[i:i + 1, :n], dec[i:i + 1, :t], images[i:i + 1])
            torch.testing.assert_close(batch[i, :t], alone[0], atol=2e-5, rtol=1e-5)


def test_text_only_sample_in_image_batch(model):
    ids = text_batch([6, 9])
    images = torch.randn(2, 3, 64, 64)
    dec = text_batch([4, 4], seed=2)
    with torch.no_grad():
        mixed = model(ids, dec, images, image_mask=torch.tensor([True, False]))
        text_only = model(ids[1:, :9], dec[1:], images=None)
        with_image = model(ids[:1, :6], dec[:1], images[:1])
    torch.testing.assert_close(mixed[1], text_only[0], atol=2e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[0], with_image[0], atol=2e-5, rtol=1e-5)
    # and the image really matters for the sample that has one
    assert (with_image - model(ids[:1, :6], dec[:1], images[:1] * 0)).abs().max() > 1e-3


def incremental_logits(model, enc, dec, code_mask=None):
    cache = DecoderCache()
    steps = [model.decode(dec[:, t:t + 1], enc, cache, code_mask) for t in range(dec.shape[1])]
    return torch.cat(steps, dim=1), cache


@pytest.mark.parametrize("code", [False, True])
def test_incremental_decoding_matches_teacher_forcing(model, code):
    ids = text_batch([8, 5])
    images = torch.randn(2, 3, 64, 64)
    dec = text_batch([7, 7], seed=3)
    code_mask = torch.tensor([code, code])
    with torch.no_grad():
        enc = model.encode(ids, images)
        full = model.decode(dec, enc, code_mask=code_mask)
        steps, cache = incremental_logits(model, enc, dec, code_mask)
    torch.testing.assert_close(steps, full, atol=2e-5, rtol=1e-5)
    assert cache.length == 7 and cache.layers[0].self_k.shape[2] == 7


def test_code_mode_changes_positions_and_mixed_batch(model):
    ids = text_batch([6, 6])
    dec = text_batch([5, 5], seed=4)
    with torch.no_grad():
        enc = model.encode(ids, None)
        text = model.decode(dec, enc, code_mask=torch.tensor([False, False]))
        code = model.decode(dec, enc, code_mask=torch.tensor([True, True]))
        mixed = model.decode(dec, enc, code_mask=torch.tensor([False, True]))
    assert (text - code).abs().max() > 1e-3
    torch.testing.assert_close(mixed[0], text[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed[1], code[1], atol=1e-5, rtol=1e-5)


def test_code_rows_are_projected_on_their_columns_only(model):
    """Training's split projection: the marked positions' logits, the code rows over the
    given ids only and the other rows over the whole vocabulary, equal the full logits."""
    ids = text_batch([6, 6])
    dec = text_batch([5, 5], seed=4)
    code_mask = torch.tensor([False, True])
    output_mask = dec.ne(PAD)
    output_mask[0, 0] = False
    with torch.no_grad():
        full = model(ids, dec, code_mask=code_mask)[output_mask]
        code_rows = torch.tensor([4, 5, 6])
        columns = torch.tensor([0, 1, 2, 3, 10, 11, 12])
        other, code = model(ids, dec, code_mask=code_mask, output_mask=output_mask,
                            code_rows=code_rows, code_columns=columns)
    keep = torch.ones(full.shape[0], dtype=torch.bool)
    keep[code_rows] = False
    torch.testing.assert_close(other, full[keep], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(code, full[code_rows][:, columns], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="code_columns"):
        model(ids, dec, output_mask=output_mask, code_rows=code_rows)


@pytest.mark.parametrize("capacity", [0, 8], ids=["concatenated", "reserved"])
def test_cache_reorder_follows_beams(model, capacity):
    ids = text_batch([6, 8])
    dec = text_batch([6, 6], seed=5)
    with torch.no_grad():
        enc = model.encode(ids, torch.randn(2, 3, 64, 64))
        cache = DecoderCache(capacity=capacity)
        model.decode(dec[:, :3], enc, cache)
        # expand to 2 "beams" per item in swapped order, then continue one step; the encoder
        # rows and cross-attention keys/values stay one per item, shared by its 2 beams
        order, sources = torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0])
        cache.reorder(order, sources=sources)
        step = model.decode(dec[order, 3:4], enc.index_select(sources), cache)
        full = model.decode(dec[order, :4], enc.index_select(order))
    torch.testing.assert_close(step[:, 0], full[:, 3], atol=2e-5, rtol=1e-5)
    assert cache.layers[0].cross_k.shape[0] == 2  # no per-beam copies
    # with room reserved, the reordered keys sit in buffers of that length, and the step
    # after the reorder wrote into them
    buffers = cache.layers[0]._buffers
    assert (buffers is not None) == (capacity > 0)
    if buffers is not None:
        assert buffers[0].shape[2] == capacity
        assert cache.layers[0].self_k.data_ptr() == buffers[0].data_ptr()


def test_cached_cross_attention_keys_are_contiguous(model):
    # SDPA reads a bf16 heads-transposed view of the projection much slower on CPU; the cache
    # keeps one contiguous copy, and the steps decoded from it match the uncached decoder
    ids, dec = text_batch([6, 8]), text_batch([5, 5], seed=9)
    with torch.no_grad():
        enc = model.encode(ids, torch.randn(2, 3, 64, 64))
        cache = DecoderCache()
        steps = [model.decode(dec[:, i:i + 1], enc, cache)[:, 0] for i in range(3)]
        full = model.decode(dec[:, :3], enc)
    for layer in cache.layers:
        assert layer.cross_k.is_contiguous() and layer.cross_v.is_contiguous()
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=2e-5, rtol=1e-5)


def test_entangled_positions_enter_the_embeddings(model):
    ids = text_batch([6, 6])
    images = torch.randn(2, 3, 64, 64)
    dec = text_batch([5, 5], seed=6)
    other = OFAModel(tiny_config(
        entangle_position_embedding=not model.config.entangle_position_embedding)).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert (model(ids, dec, images) - other(ids, dec, images)).abs().max() > 1e-3
        # the same token at two positions: embeddings differ only when positions are entangled
        text = model.encoder.embed_text(torch.full((1, 2), 7), torch.arange(2))
        tokens = model.decoder.embed(torch.full((1, 2), 7), torch.arange(2))
        patches, _, _ = model.encoder.embed_image(torch.zeros(1, 3, 32, 32))
    for x in (text[0], tokens[0], patches[0]):
        assert ((x[0] - x[1]).abs().max() > 1e-3) == model.config.entangle_position_embedding


def test_too_large_image_is_a_clear_error(model):
    with pytest.raises(InputError, match="position table"):
        model.encode(text_batch([4]), torch.randn(1, 3, 16 * 43, 16))


def test_training_mode_runs_backward():
    m = OFAModel(tiny_config(dropout=0.1, encoder_drop_path_rate=0.1,
                             resnet_drop_path_rate=0.1)).train()
    logits = m(text_batch([5, 7]), text_batch([4, 4], seed=6), torch.randn(2, 3, 32, 32))
    logits.logsumexp(-1).mean().backward()
    assert m.embed_tokens.weight.grad is not None
    assert m.encoder.embed_images.conv1.weight.grad.abs().sum() > 0


def test_vocab_logits_equal_linear():
    from ofa.model.ofa import vocab_logits

    torch.manual_seed(0)
    weight, hidden = torch.randn(300, 16), torch.randn(2, 5, 16)
    expected = torch.nn.functional.linear(hidden, weight)
    torch.testing.assert_close(vocab_logits(hidden, weight), expected, atol=1e-5, rtol=1e-5)
    got = vocab_logits(hidden.bfloat16(), weight.bfloat16())
    assert got.dtype == torch.bfloat16 and got.shape == expected.shape


@pytest.mark.parametrize("code", [False, True])
def test_inference_position_terms_follow_changed_weights(code):
    """Inference gathers the decoder's relative tables joined and every position's projections
    (the three weights joined), kept between calls: changed weights are joined again."""
    torch.manual_seed(0)
    m = OFAModel(tiny_config()).eval()
    ids, dec = text_batch([6, 6]), text_batch([5, 5], seed=4)
    code_mask = torch.tensor([code, code])

    def both():
        with torch.no_grad():
            enc = m.encode(ids, None)
            inference = m.decode(dec, enc, code_mask=code_mask)
        training = m.decode(dec, m.encode(ids, None), code_mask=code_mask)  # autograd: apart
        return inference, training.detach()

    inference, training = both()
    torch.testing.assert_close(inference, training, atol=1e-5, rtol=1e-5)
    tables = m.decoder.image_rel_pos_table_list if code else m.decoder.token_rel_pos_table_list
    with torch.no_grad():
        tables[1].weight.add_(torch.randn_like(tables[1].weight))
        m.decoder.cross_pos_q_linear.weight.mul_(3.0)
    changed, training = both()
    assert (changed - inference).abs().max() > 1e-3
    torch.testing.assert_close(changed, training, atol=1e-5, rtol=1e-5)
    # every position's projections are kept: a changed position table or its LayerNorm too
    inference = changed
    positions = m.decoder.embed_image_positions if code else m.decoder.embed_positions
    norm = m.decoder.image_pos_ln if code else m.decoder.pos_ln
    with torch.no_grad():
        positions.weight.add_(torch.randn_like(positions.weight))
        norm.bias.add_(0.5)
    changed, training = both()
    assert (changed - inference).abs().max() > 1e-3
    torch.testing.assert_close(changed, training, atol=1e-5, rtol=1e-5)
