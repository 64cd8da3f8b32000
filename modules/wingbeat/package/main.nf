process WINGBEAT_PACKAGE {
    tag "${meta.id}:${meta.model}"
    label 'process_single'

    input:
    tuple val(meta), path(model)

    output:
    tuple val(meta), path('*.mar'), emit: archive
    path 'versions.yml'           , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    insectml wingbeat package \\
        --model ${model} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    touch wingbeat.mar versions.yml
    """
}
