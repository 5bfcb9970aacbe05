PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install browser test lint slow clean demo demo-model shapes-vqgan draw-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# open_clip_torch without its dependencies: only for the CLIP BPE vocabulary it ships
# (bpe_simple_vocab_16e6.txt.gz), which ofa.imagegen finds in it and the tokenizer parity test
# reads; the package itself is never imported (its torchvision cannot load beside CPU torch).
OPEN_CLIP := open_clip_torch==3.3.0

$(VENV)/.installed: $(BIN)/python pyproject.toml requirements-dev.txt Makefile
	$(BIN)/pip install -r requirements-dev.txt
	$(BIN)/pip install --no-deps $(OPEN_CLIP)
	$(BIN)/pip install --no-deps -e .
	touch $@

install: $(VENV)/.installed

# The browser of the web page's end-to-end test (tests/serve/test_serve_page.py): Debian's
# chromium, driven by Playwright's Python package, which never downloads a browser itself.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

browser: $(CHROMIUM)

test: install $(CHROMIUM)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The embedded demo model on the demo image: caption, VQA, grounding (writes demo_out.png).
demo: install
	$(BIN)/ofa demo

# Rebuild the embedded demo model from scratch: ShapesWorld data, training (about 37 minutes
# on 2 CPU cores), export to src/ofa/assets/shapes-demo (fp16).
demo-model: install
	$(BIN)/ofa data shapes data/shapes --train 20000 --val 300 --test 1000
	$(BIN)/ofa train configs/shapes-demo.yaml
	$(BIN)/python -m ofa.demo runs/shapes-demo/best

# Rebuild the demo's image tokenizer from scratch (about 13 minutes on 2 CPU cores); the codes
# it gives change, so run `make draw-model` after it.
DEMO_VQGAN := src/ofa/assets/shapes-demo/vqgan

shapes-vqgan: install
	rm -rf $(DEMO_VQGAN)
	$(BIN)/ofa train-vqgan configs/shapes-vqgan.yaml --out $(DEMO_VQGAN)

# Rebuild the demo's drawing model from scratch (about 34 minutes on 2 CPU cores): the
# captions and codes of 60,000 ShapesWorld scenes under the shipped VQGAN, training, export to
# src/ofa/assets/shapes-demo/draw (fp16, only the embedding rows it uses). The whole of
# text-to-image from nothing: make shapes-vqgan draw-model.
draw-model: install
	rm -rf data/shapes-draw runs/shapes-draw
	$(BIN)/ofa data shapes data/shapes-draw --train 60000 --val 0 --test 1000 \
		--vqgan $(DEMO_VQGAN) --imagine-only --far-background
	$(BIN)/ofa train configs/shapes-draw.yaml
	$(BIN)/python -m ofa.demo --draw runs/shapes-draw/final

slow: install
	$(BIN)/python -m pytest -m slow

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
