process DETECTOR_VALIDATE {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(listing), path(checked, stageAs: 'checked_*.jsonl')

    output:
    tuple val(meta), path('manifest.jsonl'), path('dataset.json'), emit: manifest
    tuple val(meta), path('validation_report.json')              , emit: report
    path 'versions.yml'                                           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml detector validate \\
        --gather ${checked} \\
        --listing ${listing} \\
        --seed ${meta.seed} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    touch manifest.jsonl dataset.json validation_report.json
    insectml versions --process ${task.process} > versions.yml
    """
}
