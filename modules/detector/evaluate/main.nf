process DETECTOR_EVALUATE {
    tag "${meta.id}:${meta.stage}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(manifest), path(dataset)
    path data, stageAs: 'data'

    output:
    tuple val(meta), path('evaluation/metrics.json'), emit: metrics
    tuple val(meta), path('evaluation')             , emit: evaluation
    path 'versions.yml'                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml detector evaluate \\
        --model ${model} \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --root ${data} \\
        --out evaluation \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir evaluation
    touch evaluation/metrics.json evaluation/confusion_matrix.png evaluation/predictions.png
    insectml versions --process ${task.process} > versions.yml
    """
}
