#!/usr/bin/env nextflow
/*
 * insectml: train and evaluate insect-identification models.
 *
 *   nextflow run train_evaluate.nf [-profile test|slurm|gpu] [--task wingbeat] [--outdir results]
 *   nextflow run train_evaluate.nf --help
 *
 * This file reads params, validates them (in Python, against nextflow_schema.json),
 * picks the families and calls their workflows. Nothing here computes.
 */
nextflow.enable.dsl = 2

include { WINGBEAT } from './workflows/wingbeat'
include { DETECTOR } from './workflows/detector'
include { FEWSHOT  } from './workflows/fewshot'

def insectml(List args) {
    def proc = ([ "${projectDir}/bin/insectml" ] + args).collect { it.toString() }.execute()
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

    def tasks = params.task.tokenize(',')*.trim()
    def ch_versions = Channel.empty()

    // --sweep: the configurations, checked in Python like the params.
    def sweep = [:]
    if (params.sweep) {
        def (scode, sout, serr) = insectml([ 'sweep', 'plan', '--sweep', params.sweep, '--schema', schema, '--params', groovy.json.JsonOutput.toJson(params) ])
        if (scode != 0) {
            exit 2, serr.trim()
        }
        sweep = new groovy.json.JsonSlurper().parseText(sout)
        if (!(sweep.task in tasks)) {
            exit 2, "insectml: error: --sweep: ${params.sweep} sweeps ${sweep.task}, which --task ${params.task} does not run"
        }
        log.info "insectml: sweep ${params.sweep}: ${sweep.configs.size()} ${sweep.task} configurations"
    }

    if ('wingbeat' in tasks) {
        // The folders layout (<species>/<...>/<file>.wav) has no labels CSV.
        def labels = params.wingbeat_layout == 'folders' ? []
            : file(params.wingbeat_labels ?: "${params.wingbeat_input}/labels.csv", checkIfExists: true)
        def meta = [ id: 'wingbeat', family: 'wingbeat', seed: params.seed ]
        ch_input = Channel.of([ meta, labels, file(params.wingbeat_input, checkIfExists: true) ])
        WINGBEAT ( ch_input, params.wingbeat_models.tokenize(',')*.trim(), sweep.task == 'wingbeat' ? sweep : [:] )
        ch_versions = ch_versions.mix(WINGBEAT.out.versions)
    }

    if ('detector' in tasks) {
        def meta = [ id: 'detector', family: 'detector', seed: params.seed ]
        DETECTOR ( Channel.of([ meta, file(params.detector_input, checkIfExists: true) ]) )
        ch_versions = ch_versions.mix(DETECTOR.out.versions)
    }

    if ('fewshot' in tasks) {
        def meta = [ id: 'fewshot', family: 'fewshot', seed: params.seed ]
        FEWSHOT ( Channel.of([ meta, file(params.fewshot_input, checkIfExists: true) ]), sweep.task == 'fewshot' ? sweep : [:] )
        ch_versions = ch_versions.mix(FEWSHOT.out.versions)
    }

    ch_versions
        .unique()
        .collectFile(name: 'software_versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}

workflow.onComplete {
    if (workflow.success) {
        log.info "insectml: done. Results in ${params.outdir}; run reports in ${params.outdir}/pipeline_info"
    }
}
