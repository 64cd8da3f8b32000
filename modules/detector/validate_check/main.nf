process DETECTOR_VALIDATE_CHECK {
    tag "${meta.id}:${meta.chunk}"
    label 'process_single'

    input:
    tuple val(meta), path(candidates), path(data, stageAs: 'data')

    output:
    tuple val(meta), path('checked.jsonl'), emit: checked
    path 'versions.yml'                   , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml detector validate \\
        --check ${candidates} \\
        --root ${data} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    touch checked.jsonl
    insectml versions --process ${task.process} > versions.yml
    """
}
