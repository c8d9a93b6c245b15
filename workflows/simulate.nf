/*
 * SIMULATE: one simulated dataset made by the pipeline itself (the `test` profile's data):
 * a training set and a test set with exact truth, in the channel shapes SAMPLESHEET emits.
 */
include { PIXER_SIMULATE } from './modules/pixer_simulate'

workflow SIMULATE {
    main:
    meta = [id: params.sim_id, diameter: params.sim_diameter, apix: params.sim_apix]
    PIXER_SIMULATE(Channel.of([meta, 'train', params.seed + 1, params.sim_n_train],
                              [meta, 'test', params.seed + 2, params.sim_n_test]))
    sets = PIXER_SIMULATE.out.data.branch { m, role, dir ->
        train: role == 'train'
        test: role == 'test'
    }
    training = sets.train.map { m, role, dir ->
        [m, dir.resolve('micrographs'), dir.resolve('particles.star'), dir.resolve('map.mrc'), dir.resolve('truth')] }
    picking = sets.test.map { m, role, dir -> [m, dir.resolve('micrographs')] }
    truth = sets.test.map { m, role, dir -> [m, dir.resolve('particles.star')] }

    emit:
    training   // [meta, train micrographs, particles, map, interference masks]
    picking    // [meta, micrographs to pick]
    truth      // [meta, true coordinates of the picked micrographs]
}
