process DETECTOR_EXPORT {
    tag "${meta.id}:${meta.stage}"
    label 'process_single'

    input:
    tuple val(meta), path(model)

    output:
    tuple val(meta), path('*.torchscript.pt')                     , emit: torchscript
    tuple val(meta), path('*.{torchscript.pt,onnx,export.json}')  , emit: export
    path 'versions.yml'                                           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    insectml detector export \\
        --model ${model} \\
        --name ${prefix} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    def prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.torchscript.pt ${prefix}.export.json
    insectml versions --process ${task.process} > versions.yml
    """
}
