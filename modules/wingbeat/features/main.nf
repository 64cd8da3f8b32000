process WINGBEAT_FEATURES {
    tag "${meta.id}:${meta.chunk}"
    label 'process_single'

    input:
    tuple val(meta), path(manifest), path(dataset), path(data, stageAs: 'data')

    output:
    tuple val(meta), path('features.npz'), emit: features
    path 'versions.yml'                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml wingbeat features \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --data ${data} \\
        --out features.npz \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    touch features.npz
    insectml versions --process ${task.process} > versions.yml
    """
}
