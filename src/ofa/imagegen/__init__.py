"""Text-to-image parts of OFA: the VQGAN image tokenizer and the CLIP reranker.

Import the modules directly (``ofa.imagegen.vqgan``, ``ofa.imagegen.vqgan_io``, ...); nothing
is imported here, so ``import ofa`` stays light.
"""
