#!/usr/bin/env bash
# GPU check: does sslbench work on this machine's GPU? Run it as it is:
#
#     bash benchmarks/gpu_check.sh                  # CUDA (the default when present): under 8 minutes on one GPU
#     bash benchmarks/gpu_check.sh --device cuda:1  # another GPU
#     bash benchmarks/gpu_check.sh --device cpu     # the small CPU form CI runs (1 epoch, two methods)
#
# Every installed method is trained on `digits` (MLP protocol, fp32) and on `shapes` (conv protocol,
# bf16 on CUDA) and evaluated with every installed evaluator that needs no download (`fid` only when
# its Inception weights are on this machine: $SSLBENCH_FID_WEIGHTS or torch hub's checkpoints
# folder), all under CUDA_LAUNCH_BLOCKING=1 so that a CUDA error names the kernel that raised it;
# then benchmarks/bench_gpu.py runs (without CUDA_LAUNCH_BLOCKING, which would distort its timings).
# Prints one line per check, `PASS|FAIL name seconds [what failed]`, the same lines again at the end,
# and exits 1 when any check failed (2 on a bad option). Results go to a temporary --home that is
# removed at the end (--keep keeps it and the logs, and prints where).
#
# Options: --device DEV (cuda, cuda:N or cpu; default CUDA when present), --budget S (seconds for
# bench_gpu.py; default 150 on CUDA), --keep. The environment variable PYTHON picks the interpreter.

set -u -o pipefail

DEVICE=""
BUDGET=150
KEEP=0
while [ $# -gt 0 ]; do
    case "$1" in
        --device) DEVICE="${2:-}"; shift 2 ;;
        --device=*) DEVICE="${1#--device=}"; shift ;;
        --budget) BUDGET="${2:-}"; shift 2 ;;
        --budget=*) BUDGET="${1#--budget=}"; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check: unknown option $1 (use --device DEV, --budget S, --keep or --help)" >&2; exit 2 ;;
    esac
done

PY="${PYTHON:-python}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/sslbench_gpu_check.XXXXXX")"
if [ "$KEEP" = 1 ]; then
    trap 'echo "kept: results and logs in $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
HOME_DIR="$WORK/home"
export SSLBENCH_CACHE="$WORK/cache"  # generated data sets are cached here, not in the user's cache
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning}"
SUMMARY=()
FAILED=0
START=$(date +%s)

now() { "$PY" -c 'import time; print(time.monotonic())'; }

# record STATUS NAME SECONDS [DETAIL]: print one summary line and remember it
record() {
    local line
    line=$(printf '%-4s %-28s %7.1fs' "$1" "$2" "$3")
    [ -n "${4:-}" ] && line="$line  $4"
    echo "$line"
    SUMMARY+=("$line")
    [ "$1" = PASS ] || FAILED=$((FAILED + 1))
}

# check NAME COMMAND...: run COMMAND with its output in $WORK/NAME.log; PASS on exit 0
check() {
    local name="$1" t0 t1 rc
    shift
    t0=$(now)
    "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    t1=$(now)
    if [ $rc -eq 0 ]; then
        record PASS "$name" "$(elapsed "$t0" "$t1")"
    else
        record FAIL "$name" "$(elapsed "$t0" "$t1")" "exit $rc: $(grep -v '^\s*$' "$WORK/$name.log" | tail -n 1 | cut -c1-160)"
        echo "---- last lines of $name ----"; tail -n 15 "$WORK/$name.log"; echo "----"
    fi
    return $rc
}

elapsed() { "$PY" -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }

# --- setup: the command line imports, the device exists, what to run -------------------------------
# every method and every evaluator that needs no download, from `sslbench list-methods/list-evaluators
# --json` (run in this one process through typer's test runner); on CPU fewer methods
T0=$(now)
"$PY" - "$DEVICE" >"$WORK/plan.sh" 2>"$WORK/plan.log" <<'EOF'
import json, os, sys
from pathlib import Path

try:
    from typer.testing import CliRunner
    from sslbench.cli import app
except ImportError as exc:
    sys.exit(f"sslbench's command line does not import ({exc}); pip install -e . installs what it needs")
import torch
from sslbench.engine.train import SetupError, pick_device

try:
    device = pick_device(sys.argv[1] or None)
except SetupError as exc:
    sys.exit(str(exc))
cuda = device.type == "cuda"

def listing(kind):
    out = CliRunner().invoke(app, [f"list-{kind}", "--json"])
    if out.exit_code != 0:
        sys.exit(f"sslbench list-{kind} --json failed: {out.output.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)

methods = [m["name"] for m in listing("methods") if ":" not in m["name"]]
if not cuda:
    methods = [m for m in ("vae", "simclr") if m in methods] or methods[:2]
evaluators, params, notes = [], [], []
for e in listing("evaluators"):
    name = e["name"]
    if ":" in name:
        continue
    if any(p["name"] == "weights" for p in e["parameters"]):  # needs network weights: only when present here
        weights, why = "", "it needs weights this check cannot find"
        if name == "fid":
            env = os.environ.get("SSLBENCH_FID_WEIGHTS", "")
            hub = Path(torch.hub.get_dir()) / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
            weights = env if env and Path(env).is_file() else (str(hub) if hub.is_file() else "")
            why = "its Inception weights are not on this machine (set SSLBENCH_FID_WEIGHTS=/path/to/pt_inception-2015-12-05-6726825d.pth)"
            try:
                import pytorch_fid  # noqa: F401
            except ImportError:
                weights, why = "", "pytorch-fid is not installed"
        if weights and not cuda:
            weights, why = "", "its Inception network takes minutes on a CPU"
        if not weights:
            notes.append(f"{name} left out: {why}")
            continue
        params += [f"{name}.weights={weights}", f"{name}.num_images=500"]
    evaluators.append(name)
q = lambda items: " ".join("'" + i.replace("'", "") + "'" for i in items)
print(f"DEVICE='{device}'")
print(f"CUDA={int(cuda)}")
print(f"METHODS=({q(methods)})")
print(f"EVALUATORS=({q(evaluators)})")
print(f"EVAL_PARAMS=({q(params)})")
print(f"NOTES=({q(notes)})")
EOF
if [ $? -ne 0 ]; then
    record FAIL setup "$(elapsed "$T0" "$(now)")" "$(tail -n 1 "$WORK/plan.log")"
    printf '%s\n' "${SUMMARY[@]}"
    exit 1
fi
# shellcheck disable=SC1091
. "$WORK/plan.sh"
EVAL_ARGS=()
for e in "${EVALUATORS[@]}"; do EVAL_ARGS+=(-e "$e"); done
for p in "${EVAL_PARAMS[@]}"; do EVAL_ARGS+=(-p "$p"); done
record PASS setup "$(elapsed "$T0" "$(now)")" "device $DEVICE; ${#METHODS[@]} methods; evaluators: ${EVALUATORS[*]}"
for note in "${NOTES[@]}"; do echo "     note: $note"; done

if [ "$CUDA" = 1 ]; then
    DIGITS=(--dataset digits --epochs 2)
    SHAPES=(--dataset shapes -p shapes.n_train=5000 -p shapes.n_test=1000 --epochs 1 --precision bf16)
    BENCH=(--budget "$BUDGET")
else
    DIGITS=(--dataset digits --epochs 1)
    SHAPES=(--dataset shapes -p shapes.n_train=512 -p shapes.n_test=256 -p shapes.size=16 --epochs 1)
    BENCH=(--quick)
fi

# verify NAME: one line per method of the grid just run (trained or not, evaluators stored, skipped, failed)
verify() {
    "$PY" - "$HOME_DIR" "$1" "$DEVICE" "${METHODS[@]}" <<'EOF'
import sys
from sslbench.engine.store import ERROR_NOTE, Store

home, dataset, device, methods = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
store = Store(home)
for method in methods:
    runs = [r for r in store.runs(method=method, dataset=dataset)]
    if not runs:
        print(f"FAIL|{dataset}/{method}|0|no run stored")
        continue
    run = runs[-1]
    seconds = (run.finished or 0) - (run.started or 0) if run.finished and run.started else 0.0
    problems = []
    if run.status != "done":
        problems.append(f"run {run.status}: {(run.error or '').splitlines()[0] if run.error else ''}")
    ran = str(run.environment.get("device", ""))
    if ran and not ran.startswith(device.split(":")[0]):
        problems.append(f"trained on {ran}, not {device}")
    metrics = store.metrics(run.id)
    errors = sorted({m["evaluator"] for m in metrics if (m["note"] or "").startswith(ERROR_NOTE)})
    stored = sorted({m["evaluator"] for m in metrics if m["value"] is not None})
    skipped = sorted({m["evaluator"] for m in metrics if m["value"] is None and (m["note"] or "").startswith("skipped")})
    if errors:
        problems.append("evaluator errors: " + ", ".join(errors))
    if not stored:
        problems.append("no metric stored")
    detail = f"{len(stored)} evaluators stored" + (f", skipped as not applicable: {', '.join(skipped)}" if skipped else "")
    print(f"{'FAIL' if problems else 'PASS'}|{dataset}/{method}|{seconds:.1f}|{'; '.join(problems) or detail}")
EOF
}

run_grid() {
    local name="$1"
    shift
    check "$name" env CUDA_LAUNCH_BLOCKING=1 "$PY" -m sslbench run "${METHODS[@]}" "$@" "${EVAL_ARGS[@]}" \
        --device "$DEVICE" --home "$HOME_DIR" --format json
    while IFS='|' read -r status label seconds detail; do
        [ -n "$status" ] && record "$status" "$label" "$seconds" "$detail"
    done < <(verify "$name" 2>"$WORK/verify-$name.log" || echo "FAIL|$name/verify|0|$(tail -n 1 "$WORK/verify-$name.log")")
}

run_grid digits "${DIGITS[@]}"
run_grid shapes "${SHAPES[@]}"
check bench_gpu env -u CUDA_LAUNCH_BLOCKING "$PY" "$HERE/bench_gpu.py" --device "$DEVICE" "${BENCH[@]}" --json "$WORK/bench_gpu.json"
if [ -f "$WORK/bench_gpu.json" ]; then
    grep -v '^\(mnist\|cifar\).* | n/a: ' "$WORK/bench_gpu.log" | sed -n '/^ *| eager/,/configurations timed/p'
fi

echo
echo "summary ($DEVICE, $(( $(date +%s) - START )) s in all):"
printf '%s\n' "${SUMMARY[@]}"
if [ "$FAILED" -gt 0 ]; then
    echo "$FAILED check(s) failed"
    exit 1
fi
echo "all checks passed"
