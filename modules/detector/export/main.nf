process DETECTOR_EXPORT {
    tag "${meta.id}:${meta.stage}"
    label 'process_single'

    input:
    tuple val(meta), path(model)

    output:
    tuple val(meta), path('*.mar')                                , emit: archive
    tuple val(meta), path('*.{torchscript.pt,onnx,export.json}')  , emit: export
    path 'versions.yml'                                           , emit: versions

    script:
    def args = task.ext.args ?: ''
    def name = meta.archive ?: 'detector'
    """
    insectml detector export \\
        --model ${model} \\
        --name ${name} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    def name = meta.archive ?: 'detector'
    """
    touch ${name}.mar ${name}.torchscript.pt ${name}.export.json versions.yml
    """
}
