process WINGBEAT_TRAIN {
    tag "${meta.id}:${meta.model}${meta.config ? ':' + meta.config : ''}${meta.role == 'fold' ? ':fold' + meta.fold : meta.role == 'refit' ? ':refit' : ''}"
    label 'process_medium'
    label 'process_gpu'

    input:
    // folds: folds.json with meta.role fold/refit, else []; weights: a file or folder to start from, else []
    tuple val(meta), path(features), path(folds), path(weights, stageAs: 'init_weights/*')

    output:
    tuple val(meta), path('model'), emit: model
    path 'versions.yml'           , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def checkpoints = task.ext.checkpoint_dir ? "--checkpoint-dir ${task.ext.checkpoint_dir}" : ''
    def cv = folds ? "--folds ${folds}" + (meta.role == 'fold' ? " --fold ${meta.fold}" : '') : ''
    def init = weights ? "--weights ${weights}" : ''
    """
    insectml wingbeat train \\
        --features ${features} \\
        --model ${meta.model} \\
        --seed ${meta.seed} \\
        --threads ${task.cpus} \\
        --out model \\
        ${cv} \\
        ${init} \\
        ${checkpoints} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir model
    echo '{"model": "${meta.model}"}' > model/config.json
    touch model/model.joblib model/labels.json model/lineage.json
    insectml versions --process ${task.process} > versions.yml
    """
}
