process DETECTOR_EVALUATE {
    tag "${meta.id}:${meta.stage}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(manifest), path(dataset), path(compare, stageAs: 'compare/*')   // compare: another evaluation folder, else []
    path data, stageAs: 'data'

    output:
    tuple val(meta), path('evaluation/metrics.json'), emit: metrics
    tuple val(meta), path('evaluation')             , emit: evaluation
    path 'versions.yml'                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def comparison = compare ? "--compare-with ${compare}" : ''
    """
    insectml detector evaluate \\
        --model ${model} \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --root ${data} \\
        --out evaluation \\
        ${comparison} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir evaluation
    touch evaluation/metrics.json evaluation/report.html evaluation/confusion_matrix.png evaluation/predictions.png \\
        evaluation/pr_curves.png evaluation/ap_per_class.png evaluation/training_curves.png \\
        evaluation/explanations_classes.png
    insectml versions --process ${task.process} > versions.yml
    """
}
