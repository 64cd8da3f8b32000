process ACTIVE_SELECT {
    tag "${meta.id}"
    label 'process_single'

    input:
    // gallery: the few-shot model's gallery folder, else []
    tuple val(meta), path(model, stageAs: 'model'), path(gallery, stageAs: 'gallery')
    path pool, stageAs: 'pool'

    output:
    tuple val(meta), path('project'), emit: project
    path 'versions.yml'             , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def from_gallery = gallery ? "--gallery ${gallery}" : ''
    """
    insectml select ${pool} \\
        --model ${model} \\
        --seed ${meta.seed} \\
        --out project \\
        ${from_gallery} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir project
    touch project/meta.json project/selection.json
    insectml versions --process ${task.process} > versions.yml
    """
}
