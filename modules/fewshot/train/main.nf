process FEWSHOT_TRAIN {
    tag "${meta.id}${meta.config ? ':' + meta.config : ''}${meta.role == 'fold' ? ':fold' + meta.fold : meta.role == 'refit' ? ':refit' : ''}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(manifest), path(dataset), path(folds)   // folds: folds.json with meta.role fold/refit, else []
    path data, stageAs: 'data'
    path weights, stageAs: 'init_weights/*'                         // a file or folder to start from, else []

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
    insectml fewshot train \\
        --manifest ${manifest} \\
        --dataset ${dataset} \\
        --root ${data} \\
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
    touch model/weights.pt model/config.json model/labels.json model/lineage.json
    insectml versions --process ${task.process} > versions.yml
    """
}
