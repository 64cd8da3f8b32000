process FEWSHOT_PACKAGE {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(gallery)

    output:
    tuple val(meta), path('*.mar'), emit: archive
    path 'versions.yml'           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    insectml package fewshot \\
        --model ${model} \\
        --gallery ${gallery} \\
        --name ${prefix} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.mar
    insectml versions --process ${task.process} > versions.yml
    """
}
