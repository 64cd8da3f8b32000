process FEWSHOT_CV {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(refit, stageAs: 'refit'), path(folds, stageAs: 'fold_?')

    output:
    tuple val(meta), path('model'), emit: model
    path 'versions.yml'           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml fewshot cv \\
        --refit refit \\
        --folds-models ${folds} \\
        --out model \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    cp -r refit model
    insectml versions --process ${task.process} > versions.yml
    """
}
