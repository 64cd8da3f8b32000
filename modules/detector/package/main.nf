process DETECTOR_PACKAGE {
    tag "${meta.id}:${meta.stage}"
    label 'process_single'

    input:
    tuple val(meta), path(model), path(torchscript)

    output:
    tuple val(meta), path('*.mar'), emit: archive
    path 'versions.yml'           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    insectml package detector \\
        --model ${model} \\
        --torchscript ${torchscript} \\
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
