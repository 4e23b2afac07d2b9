# One venv for everything; every target creates or reuses it.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench networks berlin rilsa emergency sumo-1.9 clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/citybrain compare scenarios/grid10x10 --json results/demo.json --plot results/demo.png

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(VENV)/bin/citybrain bench latency --sizes 100,1000,10000 --json results/bench/latency.json
	$(VENV)/bin/citybrain bench wire --sizes 100 --seconds 20 --json results/bench/wire.json

networks: $(STAMP)
	$(PY) networks/generate.py

# SUMO's Berlin piece with generated demand; built per machine (its net lives in the venv).
berlin: $(STAMP)
	$(PY) networks/generate.py berlin
	$(VENV)/bin/citybrain compare scenarios/berlin --json results/berlin.json

# Four real intersections from Germany's RiLSA guideline that SUMO ships, with their own
# fixed-time plans and counted flows: networks none of our work was tuned on.
rilsa: $(STAMP)
	$(PY) networks/generate.py rilsa
	$(VENV)/bin/citybrain bench scenarios --scenario scenarios/rilsa1 --scenario scenarios/rilsa2 \
		--scenario scenarios/rilsa3 --scenario scenarios/rilsa4 --seeds 42,43,44 --out results/bench-rilsa

# The SUMO that RESCO's published figures come from (1.9.0/1.9.1 tested by RESCO; 1.9.2 on PyPI),
# beside ours: `citybrain bench scenarios --sumo-home results/sumo-1.9.2/sumo ...` runs it through TraCI.
SUMO19 := results/sumo-1.9.2
sumo-1.9: $(SUMO19)/sumo/bin/sumo
$(SUMO19)/sumo/bin/sumo: $(STAMP)
	$(PY) -m pip install --quiet --no-deps --target $(SUMO19) eclipse-sumo==1.9.2

# Emergency variants of RESCO city maps (they reference ../shared, nothing is copied),
# then citybrain with and without preemption on them and on grid10x10-ev.
RESCO := ../shared/networks/resco
EV_MAPS := cologne3 cologne8 ingolstadt21
emergency: $(STAMP)
	for map in $(EV_MAPS); do \
	  $(VENV)/bin/citybrain add-emergency $(RESCO)/$$map --out results/scenarios/$$map-ev || exit 1; done
	$(VENV)/bin/citybrain bench emergency --scenario scenarios/grid10x10-ev \
	  $(foreach map,$(EV_MAPS),--scenario results/scenarios/$(map)-ev) --json results/bench/emergency.json

clean:
	rm -rf $(VENV) results
