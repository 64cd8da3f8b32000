#!/usr/bin/env nextflow
/*
 * insectml: train and evaluate insect-identification models.
 *
 *   nextflow run train_evaluate.nf [-profile test|slurm|gpu] [--task wingbeat] [--outdir results]
 *   nextflow run train_evaluate.nf --help
 *
 * This file reads params, validates them (in Python, against nextflow_schema.json),
 * picks the families and calls their workflows. Nothing here computes; the utilities
 * are in subworkflows/local/utils_insectml_pipeline.
 */
nextflow.enable.dsl = 2

include { validateParams; sweepPlan; familyInput; PIPELINE_COMPLETION } from './subworkflows/local/utils_insectml_pipeline/main'
include { WINGBEAT } from './workflows/wingbeat'
include { DETECTOR } from './workflows/detector'
include { FEWSHOT  } from './workflows/fewshot'
include { PRETRAIN } from './workflows/pretrain'
include { ACTIVE_ROUND } from './subworkflows/local/active_round/main'

workflow {
    validateParams()
    def tasks = params.task.tokenize(',')*.trim()
    def sweep = sweepPlan(tasks)
    def ch_versions = Channel.empty()
    // --al_round: the model each family packages, for the labelling round after training
    def ch_select = Channel.empty()

    if ('wingbeat' in tasks) {
        WINGBEAT ( familyInput('wingbeat'), params.wingbeat_models.tokenize(',')*.trim(), sweep.task == 'wingbeat' ? sweep : [:], params.chunk_size, params.cv_folds )
        ch_versions = ch_versions.mix(WINGBEAT.out.versions)
        ch_select = ch_select.mix(WINGBEAT.out.best.map { meta, model -> [ meta, model, [] ] })
    }
    if ('detector' in tasks) {
        DETECTOR ( familyInput('detector'), params.chunk_size )
        ch_versions = ch_versions.mix(DETECTOR.out.versions)
        ch_select = ch_select.mix(DETECTOR.out.best.map { meta, model -> [ meta, model, [] ] })
    }
    if ('fewshot' in tasks) {
        FEWSHOT ( familyInput('fewshot'), sweep.task == 'fewshot' ? sweep : [:], params.chunk_size, params.cv_folds )
        ch_versions = ch_versions.mix(FEWSHOT.out.versions)
        ch_select = ch_select.mix(FEWSHOT.out.best)
    }
    if ('pretrain' in tasks) {
        PRETRAIN ( familyInput('pretrain') )
        ch_versions = ch_versions.mix(PRETRAIN.out.versions)
    }

    if (params.al_round) {
        ACTIVE_ROUND ( ch_select, file(params.al_pool, checkIfExists: true, type: 'dir') )
        ch_versions = ch_versions.mix(ACTIVE_ROUND.out.versions)
    }

    PIPELINE_COMPLETION ( ch_versions )
}
