"""What each candidate network of a pilot costs at full length on this machine, measured with nothing else running:
the arrangement the grid would take for it (runs per pack x packs at a time, lossnb.trainer.probe.best_arrangement
measured afresh), then lossnb's real training epochs in that arrangement (every pack in its own process at once,
60,000 training images at the timed rate plus one evaluation of the 10,000 test images per epoch, the fastest of
a few epochs), in the precision and memory format the pilot pins.

    python benchmarks/pilot_cost.py [--pilot grids/pilots/convnet-bn.yaml] [--out ...]

The pilot's own records time each pack by its wall time, which counts whatever else the machine ran meanwhile;
this is the same epoch on an idle machine. lossnb.pilot reads the result where the pilot's criteria name it.
"""
import argparse
import json
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from machine import describe_machine  # noqa: E402
from trainer_speed import _cpu_flags, measure, measure_many  # noqa: E402

from lossnb.data import DATASETS, input_channels  # noqa: E402
from lossnb.grid import load_grid  # noqa: E402
from lossnb.pilot import load_pilot  # noqa: E402


def candidate_cost(cfg, cores: int) -> dict:
    """The grid's arrangement for ``cfg``'s network and lossnb's aggregate rate in it, training images/s."""
    channels = input_channels(cfg.dataset, cfg.image_prep)
    choice = measure("arrangement", cfg.arch, channels, cores, (cfg.compile, cfg.precision, cfg.channels_last),
                     DATASETS[cfg.dataset]["channels"])
    k, workers = choice["pack"], choice["workers"]
    packs = measure_many(workers, cores // workers, "pack", cfg.arch, "cpu", k, False, cfg.image_prep,
                         cfg.precision, cfg.channels_last)
    return {"arch": cfg.arch, "classes": DATASETS[cfg.dataset]["classes"], "arrangement": choice,
            "packs": packs, "images_per_second": sum(p["images_per_second"] for p in packs)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pilot", default="grids/pilots/convnet-bn.yaml")
    parser.add_argument("--out", default="benchmarks/results/pilot_cost_cpu.json")
    args = parser.parse_args(argv)
    pilot = load_pilot(args.pilot)
    first = {cfg.arch: cfg for cfg in reversed(load_grid(pilot.grid_file).runs)}  # one run's settings per network
    cores = torch.get_num_threads()
    rows = []
    for arch in pilot.candidates:
        row = candidate_cost(first[arch], cores)
        rows.append(row)
        a = row["arrangement"]
        print(f"{arch:<14} packs of {a['pack']}, {a['workers']} at a time: {row['images_per_second']:,.0f} img/s "
              f"(epochs, evaluation included)", flush=True)
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"what": __doc__.strip().splitlines()[0], "pilot": str(pilot.path),
                               "machine": describe_machine("cpu"), "cpu_flags": _cpu_flags(),
                               "candidates": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
