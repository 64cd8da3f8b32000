#!/usr/bin/env nextflow
/*
 * {{ cookiecutter.project_name }}: train and evaluate {{ cookiecutter.family }} models with insectml.
 *
 *   nextflow run train_evaluate.nf [-profile test|slurm|gpu] [--outdir results]
 *   nextflow run train_evaluate.nf --help
 *
 * workflows/, modules/ and conf/ come from the insectml library and are recorded in
 * modules.json (`insectml modules check`, `insectml modules update`). This file reads
 * params, validates them (insectml, against nextflow_schema.json) and calls the workflow.
 */
nextflow.enable.dsl = 2

{%- set wf = cookiecutter.family.upper() %}

include { {{ wf }} } from './workflows/{{ cookiecutter.family }}'

def insectml(List args) {
    def proc = ([ 'insectml' ] + args).collect { it.toString() }.execute()
    def out = new StringBuilder(), err = new StringBuilder()
    proc.waitForProcessOutput(out, err)
    return [ proc.exitValue(), out.toString(), err.toString() ]
}

workflow {
    def schema = "${projectDir}/nextflow_schema.json"
    if (params.help) {
        def (code, out, err) = insectml([ 'params', 'help', '--schema', schema ])
        println(out ?: err)
        exit 0
    }
    def (code, out, err) = insectml([ 'params', 'validate', '--schema', schema, '--params', groovy.json.JsonOutput.toJson(params) ])
    if (code != 0) {
        exit 2, err.trim()
    }
{%- if cookiecutter.family != 'detector' %}

    // --sweep conf/sweeps/<name>.yaml: the configurations, checked like the params.
    def sweep = [:]
    if (params.sweep) {
        def (scode, sout, serr) = insectml([ 'sweep', 'plan', '--sweep', params.sweep, '--schema', schema, '--params', groovy.json.JsonOutput.toJson(params) ])
        if (scode != 0) {
            exit 2, serr.trim()
        }
        sweep = new groovy.json.JsonSlurper().parseText(sout)
        if (sweep.task != '{{ cookiecutter.family }}') {
            exit 2, "{{ cookiecutter.project_slug }}: error: --sweep: ${params.sweep} sweeps ${sweep.task}; this project runs {{ cookiecutter.family }}"
        }
        log.info "{{ cookiecutter.project_slug }}: sweep ${params.sweep}: ${sweep.configs.size()} configurations"
    }
{%- endif %}

    def meta = [ id: '{{ cookiecutter.family }}', family: '{{ cookiecutter.family }}', seed: params.seed ]
{%- if cookiecutter.family == 'wingbeat' %}
    // The folders layout (<species>/<...>/<file>.wav) has no labels CSV.
    def labels = params.wingbeat_layout == 'folders' ? []
        : file(params.wingbeat_labels ?: "${params.wingbeat_input}/labels.csv", checkIfExists: true)
    WINGBEAT ( Channel.of([ meta, labels, file(params.wingbeat_input, checkIfExists: true) ]),
               params.wingbeat_models.tokenize(',')*.trim(), sweep )
{%- elif cookiecutter.family == 'detector' %}
    DETECTOR ( Channel.of([ meta, file(params.detector_input, checkIfExists: true) ]) )
{%- else %}
    FEWSHOT ( Channel.of([ meta, file(params.fewshot_input, checkIfExists: true) ]), sweep )
{%- endif %}

    {{ wf }}.out.versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}

workflow.onComplete {
    if (workflow.success) {
        log.info "{{ cookiecutter.project_slug }}: done. Results in ${params.outdir}; run reports in ${params.outdir}/pipeline_info"
    }
}
