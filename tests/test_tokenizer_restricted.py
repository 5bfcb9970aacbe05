"""OFATokenizer.restricted_to: same ids for the given texts, from a much smaller BPE."""

from ofa.tokenizer import OFATokenizer


def test_restricted_tokenizer_keeps_ids_and_round_trips(bpe_dir, tmp_path):
    full = OFATokenizer.from_dir(bpe_dir)
    texts = [" what does the image describe?", " a large red circle and a small blue square",
             ' which region does the text " the circle " describe?', " <bin_12> yes"]
    small = full.restricted_to(texts)
    assert [small.encode(t) for t in texts] == [full.encode(t) for t in texts]
    small.save(tmp_path)
    again = OFATokenizer.from_dir(tmp_path)
    assert [again.encode(t) for t in texts] == [full.encode(t) for t in texts]
    assert len((tmp_path / "merges.txt").read_text().splitlines()) < 200
    other = " an unseen zebra"
    assert small.encode(other) != full.encode(other)  # falls back to byte pieces ...
    assert small.decode(small.encode(other)) == other  # ... that still decode to the text
