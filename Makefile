# Two commands for a fresh machine (as root, nothing installed): `make demo` and `make test`.
# Both create the virtual environment when it is missing and install the project into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ccount-installed
# Debian packages napari needs to draw off-screen: a virtual X server, Mesa's OpenGL and the
# xcb libraries Qt's xcb platform loads.
SYSDEPS := xvfb xauth libgl1-mesa-dri libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 \
	libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 \
	libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 \
	libxcb-xkb1 libxrender1 libxi6

.PHONY: install demo test lint format hooks sysdeps clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[gui,test]" -c constraints.txt
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ccount demo -o demo_out

sysdeps:
	@if ! command -v xvfb-run >/dev/null || ! dpkg -s $(SYSDEPS) >/dev/null 2>&1; then \
		echo "installing system packages for off-screen napari: $(SYSDEPS)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSDEPS) >/dev/null; \
	fi

test: $(STAMP) sysdeps
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest

# Lint and format check, as CI runs them; `make format` rewrites the files.
LINTED := src tests benchmarks scripts

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINTED)
	$(VENV)/bin/ruff format $(LINTED)

# Run lint and format on every commit (.pre-commit-config.yaml; uses the venv's ruff).
hooks: $(STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check pre-commit
	$(VENV)/bin/pre-commit install

clean:
	rm -rf $(VENV) build dist demo_out
