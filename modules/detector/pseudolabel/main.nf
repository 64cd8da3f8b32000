process DETECTOR_PSEUDOLABEL {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(manifest), path(dataset)
    path data, stageAs: 'data'

    output:
    tuple val(meta), path('pseudo/merged_manifest.jsonl'), path('pseudo/merged_dataset.json'), emit: merged, optional: true
    tuple val(meta), path('pseudo/target_skipped.txt')                                       , emit: skipped, optional: true
    tuple val(meta), path('pseudo')                                                          , emit: pseudo
    path 'versions.yml'                                                                      , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml detector pseudo-label \\
        --model ${model} \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --root ${data} \\
        --out pseudo \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir pseudo
    touch pseudo/merged_manifest.jsonl pseudo/merged_dataset.json pseudo/pseudo_report.json
    insectml versions --process ${task.process} > versions.yml
    """
}
