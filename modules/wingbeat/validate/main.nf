process WINGBEAT_VALIDATE {
    tag "${meta.id}"
    label 'process_single'

    input:
    // extra_labels: a labelled active-learning export (its rows join train), else []
    tuple val(meta), path(listing), path(checked, stageAs: 'checked_*.jsonl'), path(extra_labels, stageAs: 'extra_labels')

    output:
    tuple val(meta), path('manifest.jsonl'), path('dataset.json'), emit: manifest
    tuple val(meta), path('validation_report.json')              , emit: report
    path 'versions.yml'                                           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def extra = extra_labels ? "--extra-labels ${extra_labels}" : ''
    """
    insectml wingbeat validate \\
        --gather ${checked} \\
        --listing ${listing} \\
        --seed ${meta.seed} \\
        --out . \\
        ${extra} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    // one row, so that the manifest's chunks downstream are wired too
    """
    echo '{}' > manifest.jsonl
    touch dataset.json validation_report.json
    insectml versions --process ${task.process} > versions.yml
    """
}
