process WINGBEAT_COMPARE {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(models, stageAs: 'model_?'), path(evaluations, stageAs: 'evaluation_?')
    path sweep      // a sweep's table (SWEEP_SELECT), or [] without a sweep

    output:
    tuple val(meta), path('comparison/best.txt'), emit: best
    tuple val(meta), path('comparison')         , emit: comparison
    path 'versions.yml'                          , emit: versions

    script:
    def args = task.ext.args ?: ''
    def sweep_table = sweep ? "--sweep ${sweep}/sweep.json" : ''
    """
    insectml wingbeat compare \\
        --models ${models} \\
        --evaluations ${evaluations} \\
        --out comparison \\
        ${sweep_table} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir comparison
    touch comparison/best.txt comparison/comparison.csv comparison/report.html versions.yml
    """
}
