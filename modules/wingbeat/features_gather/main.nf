process WINGBEAT_FEATURES_GATHER {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(manifest), path(parts, stageAs: 'part_*.npz')

    output:
    tuple val(meta), path('features.npz'), emit: features
    path 'versions.yml'                  , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml wingbeat features \\
        --gather ${parts} \\
        --manifest ${manifest} \\
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
