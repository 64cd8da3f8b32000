process WINGBEAT_EVALUATE {
    tag "${meta.id}:${meta.model}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(features)

    output:
    tuple val(meta), path('evaluation/metrics.json'), emit: metrics
    tuple val(meta), path('evaluation')             , emit: evaluation
    path 'versions.yml'                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml wingbeat evaluate \\
        --model ${model} \\
        --features ${features} \\
        --seed ${meta.seed} \\
        --out evaluation \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir evaluation
    touch evaluation/metrics.json evaluation/confusion_matrix.png evaluation/report.html
    insectml versions --process ${task.process} > versions.yml
    """
}
