process PRETRAIN_TRAIN {
    tag "${meta.id}"
    label 'process_medium'
    label 'process_gpu'

    input:
    tuple val(meta), path(images, stageAs: 'images'), path(weights, stageAs: 'init_weights/*')   // weights: to continue from, else []

    output:
    tuple val(meta), path('weights/*'), emit: weights
    path 'versions.yml'               , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def checkpoints = task.ext.checkpoint_dir ? "--checkpoint-dir ${task.ext.checkpoint_dir}" : ''
    def init = weights ? "--weights ${weights}" : ''
    """
    insectml pretrain train \\
        --images images \\
        --seed ${meta.seed} \\
        --threads ${task.cpus} \\
        --out weights \\
        ${init} \\
        ${checkpoints} \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    mkdir -p weights/ssl
    touch weights/ssl/weights.safetensors weights/ssl/manifest.json
    insectml versions --process ${task.process} > versions.yml
    """
}
