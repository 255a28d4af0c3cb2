# The isolated cost of one optimizer step per grid (init, optimizer): all combinations timed in one
# process, interleaved, so they meet the same machine state. It runs where training runs (a normal
# job, on one thread like a train job), on a synthetic batch: it needs no data. Its low priority
# starts it after the training jobs that are ready, when the machine is as quiet as the study gets.
rule step_cost:
    input:
        # the step is the training code's (its model, optimizer and precision handling)
        code=package_code("cost", *study.TRAINING_MODULES),
    output:
        csv=STEP_COST_CSV,
    log:
        log_path("step_cost"),
    priority: -1
    conda:
        CONDA_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # one spelling per plan, so reordered or respelt config keys do not redo it
        plan=study.canonical_json(cost.plan(config)),
    script:
        "../scripts/step_cost.py"
