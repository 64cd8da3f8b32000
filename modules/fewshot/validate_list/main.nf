process FEWSHOT_VALIDATE_LIST {
    tag "${meta.id}"
    label 'process_single'

    input:
    tuple val(meta), path(labels), path(data, stageAs: 'data')   // labels: a CSV of path,label, else [] (class folders)

    output:
    tuple val(meta), path('candidates.jsonl'), emit: candidates
    tuple val(meta), path('listing.json')    , emit: listing
    path 'versions.yml'                       , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def labels_arg = labels ? "--labels ${labels}" : ''
    """
    insectml fewshot validate \\
        --list-only \\
        ${labels_arg} \\
        --root ${data} \\
        --seed ${meta.seed} \\
        --out . \\
        ${args}
    insectml versions --process ${task.process} > versions.yml
    """

    stub:
    // two candidates, so that the chunks downstream are wired too
    """
    printf '{"n": 0}\\n{"n": 1}\\n' > candidates.jsonl
    touch listing.json
    insectml versions --process ${task.process} > versions.yml
    """
}
