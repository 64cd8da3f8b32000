process WINGBEAT_TRAIN {
    tag "${meta.id}:${meta.model}${meta.config ? ':' + meta.config : ''}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(features)

    output:
    tuple val(meta), path('model'), emit: model
    path 'versions.yml'           , emit: versions

    script:
    def args = task.ext.args ?: ''
    def checkpoints = task.ext.checkpoint_dir ? "--checkpoint-dir ${task.ext.checkpoint_dir}" : ''
    """
    insectml wingbeat train \\
        --features ${features} \\
        --model ${meta.model} \\
        --seed ${meta.seed} \\
        --threads ${task.cpus} \\
        --out model \\
        ${checkpoints} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir model
    touch model/model.joblib model/config.json model/labels.json model/lineage.json versions.yml
    """
}
