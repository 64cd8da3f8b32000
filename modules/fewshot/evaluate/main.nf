process FEWSHOT_EVALUATE {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(manifest), path(dataset)
    path data, stageAs: 'data'
    path sweep      // the sweep this model won (SWEEP_SELECT), or [] without a sweep

    output:
    tuple val(meta), path('evaluation/metrics.json'), emit: metrics
    tuple val(meta), path('evaluation/gallery')     , emit: gallery
    tuple val(meta), path('evaluation')             , emit: evaluation
    path 'versions.yml'                             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def sweep_table = sweep ? "--sweep ${sweep}/sweep.json" : ''
    """
    insectml fewshot evaluate \\
        --model ${model} \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --root ${data} \\
        --seed ${meta.seed} \\
        --out evaluation \\
        ${sweep_table} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir -p evaluation/gallery
    touch evaluation/metrics.json evaluation/report.html evaluation/gallery/gallery.json
    insectml versions --process ${task.process} > versions.yml
    """
}
