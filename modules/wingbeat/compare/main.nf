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

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def sweep_table = sweep ? "--sweep ${sweep}/sweep.json" : ''
    """
    insectml wingbeat compare \\
        --models ${models} \\
        --evaluations ${evaluations} \\
        --seed ${meta.seed} \\
        --out comparison \\
        ${sweep_table} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir comparison
    # the first model's name (from its stub config.json), so that packaging is wired too
    grep -ho '"model": "[^"]*"' model_*/config.json | head -n 1 | cut -d '"' -f 4 > comparison/best.txt
    touch comparison/comparison.csv comparison/report.html
    insectml versions --process ${task.process} > versions.yml
    """
}
