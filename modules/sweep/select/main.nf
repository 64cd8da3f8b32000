process SWEEP_SELECT {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), val(ids), path(models, stageAs: 'model_?'), path(plan)

    output:
    tuple val(meta), path('sweep/best.txt'), emit: best
    tuple val(meta), path('sweep')         , emit: sweep
    path 'versions.yml'                    , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml sweep select \\
        --task ${meta.family} \\
        --plan ${plan} \\
        --models ${models} \\
        --ids ${ids.join(' ')} \\
        --out sweep \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir sweep
    echo ${ids[0]} > sweep/best.txt
    touch sweep/sweep.csv sweep/sweep.json
    insectml versions --process ${task.process} > versions.yml
    """
}
