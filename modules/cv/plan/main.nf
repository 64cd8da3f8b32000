process CV_PLAN {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(manifest)
    val cv_folds    // auto, 0 or the number of folds
    val unit        // what a fold is made of: group (recording groups) or class (class-disjoint folds)

    output:
    tuple val(meta), path('folds.json'), emit: folds
    path 'versions.yml'                , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    insectml cv plan \\
        --manifest ${manifest} \\
        --cv-folds ${cv_folds} \\
        --unit ${unit} \\
        --seed ${meta.seed} \\
        --out folds.json \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    """
    echo '{"k": 0, "seed": ${meta.seed}, "group_fold": {}, "reason": "stub"}' > folds.json
    insectml versions --process ${task.process} > versions.yml
    """
}
