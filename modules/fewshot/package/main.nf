process FEWSHOT_PACKAGE {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(gallery)

    output:
    tuple val(meta), path('*.mar'), emit: archive
    path 'versions.yml'           , emit: versions

    script:
    def args = task.ext.args ?: ''
    """
    insectml fewshot package \\
        --model ${model} \\
        --gallery ${gallery} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    touch fewshot.mar versions.yml
    """
}
