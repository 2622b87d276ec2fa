#!/bin/bash
# usage: bench.sh LABEL   (LABEL = kl_tf_N | kl_tf_base_N | kl_search_jax_N | kl_search_tf_N | kl_search_tf1_N |
#                          kl_search_tf12_N (TensorFlow pools: 1 thread per op, 2 side by side) |
#                          kl_search_torch_N | kl_search_{jax,tf}_eb_N (eval_batch_size=1000) |
#                          kl_search_{jax,tf}[_eb]_f32_N (float32 images) | kl_search_tf[12]_jit[_eb_f32]_N (jit_compile=True) |
#                          keras_fit_{tf,jax}_N (plain Keras fit, keras_fit_floor.py) |
#                          olth100_N | olthdefault_N | floor_{tf,jax,torch,olth}_N)
# One whole-process run under /usr/bin/time -v (apt-get install -y time),
# load before/after, and a 5 s sampler of load and other busy processes.
set -u
# BENCH_DIR (default $OLTH_DIR/bench): where the results go
D=${OLTH_DIR:-$HOME/olth}; L=$1; OUT=${BENCH_DIR:-$D/bench}/$L; rm -rf $OUT; mkdir -p $OUT
{ echo "start $(date -Is)"; uptime; ps -eo pid,pcpu,etime,args --sort=-pcpu | head -5 | cut -c1-140; } > $OUT/load_before.txt
( while true; do echo "$(date +%T) $(uptime | sed 's/.*load average: //')"; ps -eo pid,pcpu,args --sort=-pcpu | awk 'NR>1 && $2>20' | grep -v -E "olth/(kl|kljax|kltorch|)venv|olth/kljax|olth/kltorch|run_open_lth|keras-lottery|kl_search_jax|keras_fit_floor|import keras|import torch" | cut -c1-120; sleep 5; done ) > $OUT/others.txt 2>&1 &
SAMPLER=$!
cd $D
[[ $L == kl_search_*_eb_* ]] && export KL_EVAL_BATCH=1000  # kl_search_jax.py: LotterySearch.fit(eval_batch_size=)
[[ $L == kl_search_*_f32_* ]] && export KL_FLOAT32=1  # kl_search_jax.py: float32 images
[[ $L == kl_search_*_jit_* ]] && export KL_JIT=1  # kl_search_jax.py: model.compile(jit_compile=True)
case $L in
  kl_tf_base_*)  # the preset command with keras_lottery from KL_BASE_SRC (a checkout to compare;
                 # before kl_tf_*, which would match it too)
    PYTHONPATH=${KL_BASE_SRC:?set KL_BASE_SRC to a keras-lottery checkout} /usr/bin/time -v -o $OUT/time.txt \
      $D/klvenv/bin/keras-lottery run --preset lenet300 --dataset fashion_mnist \
      --steps 2000 --rounds 3 --logdir $OUT/runs > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  kl_tf_*)
    /usr/bin/time -v -o $OUT/time.txt $D/klvenv/bin/keras-lottery run --preset lenet300 --dataset fashion_mnist \
      --steps 2000 --rounds 3 --logdir $OUT/runs > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  kl_search_jax_*)
    KERAS_BACKEND=jax /usr/bin/time -v -o $OUT/time.txt $D/kljax/bin/python $D/kl_search_jax.py $OUT/runs \
      > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  kl_search_tf_*|kl_search_tf1_*|kl_search_tf12_*)  # kl_search_tf1: one thread per TensorFlow pool;
    # kl_search_tf12: one thread per op, two ops side by side (the lenet300 recipe's pools)
    POOLS=(); [[ $L == kl_search_tf1_* ]] && POOLS=(TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1)
    [[ $L == kl_search_tf12_* ]] && POOLS=(TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=2)
    env "${POOLS[@]}" KERAS_BACKEND=tensorflow /usr/bin/time -v -o $OUT/time.txt $D/klvenv/bin/python \
      $D/kl_search_jax.py $OUT/runs > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  kl_search_torch_*)
    KERAS_BACKEND=torch /usr/bin/time -v -o $OUT/time.txt $D/kltorch/bin/python $D/kl_search_jax.py $OUT/runs \
      > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  keras_fit_tf_*|keras_fit_jax_*)  # plain Keras `model.fit` of the same trainings (keras_fit_floor.py)
    B=tensorflow; V=klvenv; [[ $L == keras_fit_jax_* ]] && { B=jax; V=kljax; }
    KERAS_BACKEND=$B /usr/bin/time -v -o $OUT/time.txt $D/$V/bin/python $D/keras_fit_floor.py \
      > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  floor_tf_*)  # the framework's floor: an empty `import keras` process on each backend
    KERAS_BACKEND=tensorflow /usr/bin/time -v -o $OUT/time.txt $D/klvenv/bin/python -c "import keras" > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  floor_jax_*)
    KERAS_BACKEND=jax /usr/bin/time -v -o $OUT/time.txt $D/kljax/bin/python -c "import keras" > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  floor_torch_*)
    KERAS_BACKEND=torch /usr/bin/time -v -o $OUT/time.txt $D/kltorch/bin/python -c "import keras" > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  floor_olth_*)  # open_lth's: torch and torchvision imported
    /usr/bin/time -v -o $OUT/time.txt $D/venv/bin/python -c "import torch, torchvision" > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  olth100_*|olthdefault_*)
    EV=100; [[ $L == olthdefault_* ]] && EV=0
    OLTH_DIR=$D OPEN_LTH_ROOT=$OUT/root OPEN_LTH_DATASETS=$D/datasets OPEN_LTH_EVAL_EVERY_IT=$EV OLTH_THREADS=2 \
      /usr/bin/time -v -o $OUT/time.txt $D/venv/bin/python $D/run_open_lth.py lottery \
      --default_hparams=mnist_lenet_300_100 --levels=3 --training_steps=2000it --batch_size=60 \
      --optimizer_name=adam --lr=0.0012 --data_order_seed=0 > $OUT/stdout.txt 2> $OUT/stderr.txt ;;
  *) echo "unknown label $L"; kill $SAMPLER; exit 2 ;;
esac
echo "rc $?" >> $OUT/load_before.txt
kill $SAMPLER
{ echo "end $(date -Is)"; uptime; } > $OUT/load_after.txt
echo "$L $(grep -E 'Elapsed|Maximum resident' $OUT/time.txt | tr -s ' \t' ' ' | tr '\n' ' ')"
